"""The scripts as a whole: --use_fp16 end to end, and --help, run directly and
through setup.cfg's console-script entry points."""

import ast
import configparser
import importlib
import re
import subprocess
import sys

import pytest
from helpers import REPO, logged_steps, read_events, run_script, script_env

import cifar10
from cifar10 import tf

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


@pytest.fixture(scope='module', params=sorted(console_scripts()))
def console_script_help(request):
    """(module name, the CompletedProcess of the console script's --help),
    calling the entry point's function as the installed wrapper does."""
    module, function = console_scripts()[request.param]
    code = 'import sys; sys.argv = [%r, "--help"]; import %s; %s.%s()' % (
        request.param, module, module, function)
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env=script_env(), check=False)
    return module, result


def test_setup_cfg_installs_every_script():
    assert {module for module, _ in console_scripts().values()} == set(OWN_FLAG_MODULES)


def test_script_help_lists_the_shared_flags_beside_its_own(script_help):
    script, result = script_help
    shared = flags_of(['cifar10'])
    assert {'batch_size', 'data_dir', 'use_fp16'} <= shared
    own = flags_of(OWN_FLAG_MODULES[script[:-len('.py')]])
    assert listed_flags(result.stdout) >= shared | own, result.stdout + result.stderr


def test_script_help_prints_the_docstring_as_written(script_help):
    script, result = script_help
    docstring = ast.get_docstring(ast.parse((REPO / script).read_text()), clean=False)
    assert result.stdout.startswith(docstring), result.stdout + result.stderr


def test_console_script_help_lists_the_shared_flags_beside_its_own(console_script_help):
    module, result = console_script_help
    own = flags_of(OWN_FLAG_MODULES[module])
    assert listed_flags(result.stdout) >= flags_of(['cifar10']) | own, (
        result.stdout + result.stderr)


def test_fp16_trains_and_the_evaluator_scores_its_checkpoint(synthetic_data_dir, tmp_path):
    train_dir, eval_dir = tmp_path / 'train', tmp_path / 'eval'
    shared_flags = ['--use_fp16', '--data_dir=%s' % synthetic_data_dir, '--batch_size=16']
    trained = run_script('cifar10_train.py', *shared_flags, '--train_dir=%s' % train_dir,
                         '--max_steps=10', '--log_frequency=5')
    assert trained.returncode == 0, trained.stderr
    assert [step for step, _ in logged_steps(trained.stdout)] == [0, 5]
    dtypes = tf.train.load_checkpoint(str(train_dir)).get_variable_to_dtype_map()
    assert dtypes['conv1/weights'] == dtypes['local4/weights/ExponentialMovingAverage'] \
        == tf.float16

    evaluated = run_script('cifar10_eval.py', *shared_flags, '--checkpoint_dir=%s' % train_dir,
                           '--eval_dir=%s' % eval_dir, '--run_once')
    assert evaluated.returncode == 0, evaluated.stderr
    assert re.search(r'precision @ 1 = [01]\.\d{3}$', evaluated.stdout, re.MULTILINE)
    [event] = read_events(eval_dir).Scalars('Precision @ 1')
    assert event.step == 10
