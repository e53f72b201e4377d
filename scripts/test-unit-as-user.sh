#!/usr/bin/env bash
# The unit lane as an unprivileged user with Debian's /usr/bin/python3 (the default
# python here is pyenv's under /root, which other users cannot run): a copy of the
# checkout in /tmp, its own venv, the whole test tree (e2e tests skip, saying why),
# and the line coverage of the orchestration modules from unit tests alone.
set -euo pipefail
cd "$(dirname "$0")/.."
user=orch-unit
id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
work=$(mktemp -d /tmp/orch-unit.XXXXXX)
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents -P {} "$work"/ 2>/dev/null || cp -a orchestrator sandbox tests pyproject.toml "$work"/
/usr/bin/python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check paramiko pyyaml click jinja2 numpy rich pytest pytest-cov 2>&1 \
  | grep -v '^WARNING: Location' || true
chown -R "$user" "$work"
chmod 755 "$work"
cd "$work"
start=$(date +%s)
runuser -u "$user" -- env HOME="$work" "$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests \
  --cov=orchestrator --cov-report=json:"$work/cov.json" 2>&1 | tail -n 3
echo "unit lane as $user: $(( $(date +%s) - start )) s"
"$work/venv/bin/python" - "$work/cov.json" <<'PY'
import json, sys
files = json.load(open(sys.argv[1]))["files"]
low = []
# a session is one module per phase (bench/session.py runs deploy, loading, gathering, cleanup): held
# to the bar together, as session.py was before the split
groups = {"services/servers.py": ["services/servers.py"], "monitoring/monitors.py": ["monitoring/monitors.py"],
          "bench session (its 5 phase modules)": ["bench/session.py", "bench/deploy.py", "bench/loading.py",
                                                  "bench/gathering.py", "bench/cleanup.py"],
          "watch/watcher.py": ["watch/watcher.py"]}
for label, names in groups.items():
    s = [files[f"orchestrator/{n}"]["summary"] for n in names]
    pct = 100 * sum(x["covered_lines"] for x in s) / max(1, sum(x["num_statements"] for x in s))
    print(f"unit coverage {label}: {pct:.0f}%")
    if pct < 80:
        low.append(label)
if low:
    sys.exit(f"below 80% line coverage from unit tests: {', '.join(low)}")
PY
