"""--mixed_precision: 16-bit arithmetic through TensorFlow's graph rewrites (which
runtime.session_config turns on), fp16's loss scaling, and where 16 bits cannot be fast:
bf16 needs a CPU with bfloat16 instructions, fp16 a GPU (float16 without one is refused,
TensorFlow's CPU kernels for it being slow). A library; the trainers use it via cifar10.
"""

from cifar10_support.runtime import tf

# Where the CPU's flags are listed, and those that make bfloat16 fast there.
CPUINFO_PATH = '/proc/cpuinfo'
BFLOAT16_CPU_FLAGS = ('amx_bf16', 'avx512_bf16')
# GPUs from this compute capability on have fast float16 (Volta, 2017).
FAST_FLOAT16_COMPUTE_CAPABILITY = (7, 0)


def float16_refusal(mixed_precision, use_fp16):
    """Why this machine cannot take --mixed_precision=fp16 or --use_fp16 (the flags'
    values), one line naming the flag; None where there is a GPU or neither asks for it."""
    if tf.config.list_physical_devices('GPU'):
        return None
    slow = ('which only a GPU does fast, and this machine has none: on a CPU, TensorFlow\'s '
            'float16 kernels can be a hundred times slower than float32')
    if mixed_precision == 'fp16':
        return ('--mixed_precision=fp16 computes in float16, %s; use --mixed_precision=bf16, '
                'the CPU\'s 16-bit format, or leave the flag out' % slow)
    if use_fp16:
        return ('--use_fp16 builds the model in float16, %s; leave it out, or use '
                '--mixed_precision=bf16' % slow)
    return None


def not_faster_reason(mixed_precision):
    """Why --mixed_precision ('bf16' or 'fp16') cannot make this machine faster, one line
    naming the flag; None where it can be faster."""
    gpus = tf.config.list_physical_devices('GPU')
    if mixed_precision == 'bf16':
        if gpus:
            return ('--mixed_precision=bf16 converts only the CPU\'s ops to bfloat16 (TensorFlow '
                    'has no such rewrite for GPUs), so the GPU computes in float32: use '
                    '--mixed_precision=fp16 on a GPU')
        if not set(BFLOAT16_CPU_FLAGS) & _cpu_flags():
            return ('--mixed_precision=bf16: this CPU has no bfloat16 instructions (%s), so '
                    'oneDNN emulates them: this will be slower, not faster'
                    % ' or '.join(BFLOAT16_CPU_FLAGS))
        return None
    for gpu in gpus:
        capability = tf.config.experimental.get_device_details(gpu).get('compute_capability')
        if capability and tuple(capability) < FAST_FLOAT16_COMPUTE_CAPABILITY:
            return ('--mixed_precision=fp16: %s (compute capability %d.%d) has no fast '
                    'float16, so TensorFlow leaves its ops in float32: this will not be '
                    'faster' % (gpu.name, capability[0], capability[1]))
    return None


def _cpu_flags():
    """The CPU's feature flags listed in CPUINFO_PATH (empty if unreadable)."""
    try:
        with open(CPUINFO_PATH) as cpuinfo:
            for line in cpuinfo:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def loss_scale_optimizer(opt):
    """Wraps opt, a tf.train.Optimizer, in TensorFlow's dynamic loss scaling for fp16, so
    that gradients too small for float16 do not flush to zero; returns the wrapper and its
    loss-scale variable. Its variables are local, so that the checkpoints are the same
    with and without fp16 (a resumed run starts with the initial scale)."""
    created = []

    def local_variable(next_creator, **kwargs):
        kwargs['collections'] = [tf.GraphKeys.LOCAL_VARIABLES]
        created.append(next_creator(**kwargs))
        return created[-1]

    with tf.variable_creator_scope(local_variable):
        opt = _LossScaleOptimizer(opt, 'dynamic')
    [scale] = [v for v in created if v.op.name.endswith('current_loss_scale')]
    return opt, scale


class _LossScaleOptimizer(tf.mixed_precision.MixedPrecisionLossScaleOptimizer):
    """TensorFlow's, except that a step it skips is counted all the same:
    SyncReplicasOptimizer's tokens carry the global step, and a round that
    did not advance it would wait for ever."""

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        apply_op = super().apply_gradients(grads_and_vars, name=name)
        if global_step is None:
            return apply_op
        with tf.control_dependencies([apply_op]):
            return tf.assign_add(global_step, 1).op
