"""The scripts as a whole: --help, run directly and through setup.cfg's
console-script entry points."""

import ast
import configparser
import importlib
import re
import subprocess
import sys

import pytest
from helpers import REPO, run_script, script_env

import cifar10

SCRIPTS = ['cifar10_train.py', 'cifar10_eval.py', 'cifar10_multi_gpu_train.py',
           'cifar10_predict.py', 'cifar10_export.py', 'cifar10_distributed_train.py']

# The modules whose flags each script uses besides cifar10.py's shared ones.
OWN_FLAG_MODULES = {
    'cifar10_train': ['cifar10_train'],
    'cifar10_eval': ['cifar10_eval'],
    'cifar10_multi_gpu_train': ['cifar10_multi_gpu_train', 'cifar10_train'],
    'cifar10_distributed_train': ['cifar10_distributed_train', 'cifar10_multi_gpu_train',
                                  'cifar10_train'],
    'cifar10_predict': ['cifar10_predict'],
    'cifar10_export': ['cifar10_export'],
}


def flags_of(module_names):
    """The names of the flags these modules define."""
    return {flag.name for name in module_names
            for flag in cifar10.FLAGS.get_flags_for_module(importlib.import_module(name))}


def listed_flags(help_text):
    """The flag names a --help output lists (booleans as --[no]name)."""
    return set(re.findall(r'^  --(?:\[no\])?(\w+):', help_text, re.MULTILINE))


def console_scripts():
    """setup.cfg's console scripts, as {name: (module, function)}."""
    config = configparser.ConfigParser()
    config.read(REPO / 'setup.cfg')
    entries = {}
    for line in config['options.entry_points']['console_scripts'].strip().splitlines():
        name, target = (part.strip() for part in line.split('='))
        entries[name] = tuple(target.split(':'))
    return entries


@pytest.fixture(scope='module', params=SCRIPTS)
def script_help(request):
    """(script, the CompletedProcess of `python <script> --help`)."""
    return request.param, run_script(request.param, '--help', timeout=60)


# The console script run in full; every one calls its module's run(), which
# hands the same runner (cifar10.run) its module's flags.
CONSOLE_SCRIPT = 'cifar10-distributed-train'


@pytest.fixture(scope='module')
def console_script_help():
    """(module name, the CompletedProcess of CONSOLE_SCRIPT's --help),
    calling the entry point's function as the installed wrapper does."""
    module, function = console_scripts()[CONSOLE_SCRIPT]
    code = 'import sys; sys.argv = [%r, "--help"]; import %s; %s.%s()' % (
        CONSOLE_SCRIPT, module, module, function)
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env=script_env(), check=False)
    return module, result


def test_setup_cfg_installs_every_script_through_its_run_function():
    assert {module for module, _ in console_scripts().values()} == set(OWN_FLAG_MODULES)
    for module, function in console_scripts().values():
        assert function == 'run' and callable(importlib.import_module(module).run)


def test_script_help_lists_the_flags_the_script_uses_and_no_other(script_help):
    script, result = script_help
    module = importlib.import_module(script[:-len('.py')])
    assert listed_flags(result.stdout) == set(module.FLAGS_USED), result.stdout + result.stderr
    assert flags_of(OWN_FLAG_MODULES[module.__name__][:1]) <= set(module.FLAGS_USED)


def test_script_help_prints_the_docstring_as_written(script_help):
    script, result = script_help
    docstring = ast.get_docstring(ast.parse((REPO / script).read_text()), clean=False)
    assert result.stdout.startswith(docstring), result.stdout + result.stderr


def test_console_script_help_lists_the_flags_the_script_uses(console_script_help):
    module, result = console_script_help
    assert listed_flags(result.stdout) == set(importlib.import_module(module).FLAGS_USED), (
        result.stdout + result.stderr)
