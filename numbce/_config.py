"""Tunables of the backends, in one place (tests patch them here).

Results never depend on them: sums are taken per fixed block of :data:`BLOCK` elements on the
CPU, and each backend's reduction order is fixed for a given value of these settings.
"""

BLOCK = 4096
"""Elements per CPU reduction block (fixed: results do not depend on the thread count)."""

PARALLEL_THRESHOLD = 2 * BLOCK
"""From two blocks on, the CPU uses its parallel kernel: measured on 2 cores, two threads
already halve the time of 8192 elements (the launch costs about 2 us, one block 12-30 us)."""

STREAMING_THRESHOLD = 2**22
"""From this many elements on, the CPU kernels take their family's second
``vector_interleave`` (data streamed from RAM, not in cache): on the 2-core Zen 5 the
with-logits kernel at 8 vectors per iteration is the fastest at 3e6 elements and half as
fast as at 4 at 1e7."""

THREADS_PER_BLOCK = 256
"""CUDA threads per block (a power of two: the block sum is a halving tree)."""

BLOCKS_PER_SM = 8
"""CUDA blocks per multiprocessor: 8 x 256 threads fill an SM of 2048; the threads stride."""

MAX_BLOCKS: int | None = None
"""If set, the CUDA grid's size limit instead of ``BLOCKS_PER_SM`` x the SM count (tests set
it so that tiny arrays still span several blocks and each thread loops)."""

COMPILED_EPOCHS = "auto"
"""When ``fit`` runs its epochs compiled (:mod:`numbce.nn.compiled`, the same bits as
its Python loop): ``"auto"`` where they are compiled already (in this process or Numba's
cache), else in the Python loop, compiling them in the background for later fits
(:data:`BACKGROUND_COMPILE`); ``"always"`` (compile on the spot: 15-30 s once, then tens
of microseconds saved per step) or ``"never"``."""

BACKGROUND_COMPILE = True
"""Whether a fit that runs the Python loop because its compiled epochs are not cached
starts a low-priority process that compiles them into the cache (never without a spare
core; see ``numbce.nn.compiled.compile_in_background``)."""
