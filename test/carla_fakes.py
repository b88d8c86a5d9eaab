"""Load the fake ``carla`` module (test/fake_carla) for a test, in-process or for child nodes."""
import importlib.util
import os
from pathlib import Path
import sys

FAKE_CARLA_DIR = Path(__file__).resolve().parent / 'fake_carla'


def load_fake_carla():
    """Return a freshly loaded fake ``carla`` module (not registered in ``sys.modules``)."""
    spec = importlib.util.spec_from_file_location(
        'carla', FAKE_CARLA_DIR / 'carla' / '__init__.py',
        submodule_search_locations=[str(FAKE_CARLA_DIR / 'carla')])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install_fake_carla(monkeypatch, **server):
    """
    Make ``import carla`` return a fresh fake for this test; return the module.

    :param monkeypatch: pytest's fixture (restores ``sys.modules`` afterwards)
    :param server: fake server settings (``server_version``, ``down``, ``town``, ...)
    """
    module = load_fake_carla()
    module._reset(**server)
    monkeypatch.setitem(sys.modules, 'carla', module)
    return module


def fake_carla_environment(base=None, **variables) -> dict:
    """
    Return an environment whose child processes import the fake ``carla``.

    :param base: environment to extend (default ``os.environ``)
    :param variables: ``FAKE_CARLA_*`` settings, e.g. ``FAKE_CARLA_DOWN='1'``
    """
    env = dict(os.environ if base is None else base)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(FAKE_CARLA_DIR),
                                                      env.get('PYTHONPATH', '')]))
    env.update({key: str(value) for key, value in variables.items()})
    return env
