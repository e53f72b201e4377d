"""A config, the ssh_config it names and its recipe folders can make the tool run commands as the user
(a ProxyCommand, a recipe's command): one another user owns or may write is refused until trusted."""

import os

import pytest

from orchestrator.config import load_config
from orchestrator.errors import ConfigError


def write(path, text, mode=0o644):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_config_others_may_write_is_refused_until_trusted_on_purpose(tmp_path):
    cfg = write(tmp_path / "config.yaml", "ssh: {host: login}\n", 0o666)
    with pytest.raises(ConfigError) as err:
        load_config(cfg, env={})
    assert str(cfg) in str(err.value) and "writable by others (mode 666)" in str(err.value)
    assert f"export ORCH_TRUSTED_PATHS={cfg.resolve()}" in str(err.value)
    assert load_config(cfg, env={"ORCH_TRUSTED_PATHS": f"/elsewhere:{cfg}"}).ssh.host == "login"
    cfg.chmod(0o620)
    with pytest.raises(ConfigError, match="writable by its group"):
        load_config(cfg, env={})
    cfg.chmod(0o600)
    assert load_config(cfg, env={}).ssh.host == "login"      # the user's own file, as seed 001 uses it


def test_the_ssh_config_and_recipe_folders_it_names_are_checked_too(tmp_path):
    ssh_config = write(tmp_path / "ssh_config", "Host login\n  ProxyCommand touch /tmp/pwned\n", 0o646)
    cfg = write(tmp_path / "config.yaml", f"ssh: {{host: login, client: openssh, ssh_config: {ssh_config}}}\n")
    with pytest.raises(ConfigError, match="the ssh_config that .* names is writable by others"):
        load_config(cfg, env={})
    ssh_config.chmod(0o600)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    recipes.chmod(0o777)
    write(cfg, f"ssh: {{host: login, ssh_config: {ssh_config}}}\nrecipe_dirs: [{recipes}]\n")
    with pytest.raises(ConfigError, match="the recipe folder that .* names is writable by others"):
        load_config(cfg, env={})
    recipes.chmod(0o700)
    assert load_config(cfg, env={}).recipe_dirs == (recipes,)


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root")
def test_a_config_another_user_owns_is_refused(tmp_path):
    cfg = write(tmp_path / "config.yaml", "ssh: {host: login}\n")
    os.chown(cfg, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by .*, not by you"):
        load_config(cfg, env={})
