"""`orch recipes list` and `orch validate FILE`: what recipes there are, and whether one is right,
without the cluster."""

from __future__ import annotations

from pathlib import Path

import click

from orchestrator.cli.common import _ctx, common_options, emit, progress


def configured_dirs(ctx) -> tuple:
    """config.yaml's recipe_dirs when there is a config; the packaged recipes alone otherwise."""
    cfg = ctx.optional_config()
    return tuple(cfg.recipe_dirs) if cfg is not None else ()


def render_dry_run(ctx, recipe_ref: str):
    """(recipe, its sbatch script) rendered here, with no connection: the config's SLURM options where
    there is a config, the recipe's own otherwise."""
    from orchestrator.config import SlurmConfig
    from orchestrator.services.jobscript import render_service_script
    from orchestrator.services.recipes import load_recipe
    from orchestrator.services.servers import new_service_id
    cfg = ctx.optional_config()
    if cfg is None:
        progress("no config file: rendering with the recipe's SLURM options only", level="warning")
    recipe = load_recipe(recipe_ref, cfg.recipe_dirs if cfg else ())
    script = render_service_script(recipe, cfg.slurm if cfg else SlurmConfig(), new_service_id(recipe),
                                   cfg.remote if cfg else None)
    return recipe, script


def recipe_rows(configured) -> list[dict]:
    """Every recipe a name can reach, in lookup order (a name found twice: the first one wins)."""
    from orchestrator.bench.recipe import load_benchmark
    from orchestrator.errors import OrchestratorError
    from orchestrator.services.recipes import load_recipe, recipe_dirs
    rows, seen = [], set()
    for kind in ("services", "benchmarks"):
        for d in recipe_dirs(kind, configured):
            for f in sorted(d.glob("*.y*ml")) if d.is_dir() else []:
                key = (kind, f.stem)
                row = {"name": f.stem, "path": str(f), "shadowed": key in seen}
                seen.add(key)
                try:
                    if kind == "services":
                        r = load_recipe(str(f))
                        row.update(kind="monitor" if r.is_monitor else "service", description=r.description,
                                   engine=r.engine or "")
                    else:
                        b = load_benchmark(str(f))
                        row.update(kind="benchmark", description=b.description,
                                   engine=", ".join(dict.fromkeys(c.kind for c in b.clients)))
                except OrchestratorError as exc:
                    row.update(kind=kind.rstrip("s"), description=f"INVALID: {exc}", engine="")
                rows.append(row)
    return rows


@click.group()
def recipes():
    """Service, monitor and benchmark recipes: what there is (config recipe_dirs, then the packaged ones)."""


@recipes.command("list")
@common_options
@click.pass_context
def recipes_list(click_ctx, config_path, as_json):
    """Every recipe a name reaches: kind, name, engine or client kinds, description, file."""
    from orchestrator.terminal import render_table
    ctx = _ctx(click_ctx, config_path, as_json)
    rows = recipe_rows(configured_dirs(ctx))
    table = render_table(["kind", "name", "engine / clients", "description", "file"],
                         [[r["kind"], r["name"] + (" (shadowed)" if r["shadowed"] else ""), r["engine"],
                           (r["description"] or "").split("\n")[0][:60], r["path"]] for r in rows])
    emit(ctx, rows, table)


@click.command()
@common_options
@click.argument("recipe", metavar="NAME|FILE")
@click.option("--scripts", "scripts_dir", default=None, type=click.Path(file_okay=False),
              help="write each job's rendered sbatch script into this folder")
@click.pass_context
def validate(click_ctx, config_path, as_json, recipe, scripts_dir):
    """Check a recipe without the cluster: a benchmark recipe with everything it names (its plan is
    printed, as `bench run --dry-run` does), or a service recipe (its sbatch script rendered)."""
    from orchestrator.bench.recipe import is_benchmark_ref
    from orchestrator.cli.bench import show_plan
    ctx = _ctx(click_ctx, config_path, as_json)
    dirs = configured_dirs(ctx)
    if is_benchmark_ref(recipe, dirs):
        show_plan(ctx, recipe, scripts_dir)
        return
    from orchestrator.fileio import write_atomic
    r, script = render_dry_run(ctx, recipe)
    text = (f"{r.source}: valid {'monitor' if r.is_monitor else 'service'} recipe {r.name}; its sbatch script "
            f"renders ({len(script.splitlines())} lines)")
    if scripts_dir:
        Path(scripts_dir).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(scripts_dir) / f"{r.name}.sbatch", script)
        text += f"; written to {Path(scripts_dir) / (r.name + '.sbatch')}"
    emit(ctx, {"recipe": r.source, "name": r.name, "kind": "monitor" if r.is_monitor else "service", "valid": True}, text)
