"""The shipped quant stages, by pillar; importing this package registers them all.

==============  ==================================================================
Module          Registers
==============  ==================================================================
``contexts``    ``PortfolioContext``, ``DataOpsContext`` and the context adapters
                MetaContext -> DataOpsContext -> PortfolioContext
``foundation``  ``foundation.ingest``, ``foundation.features``
``alpha``       ``alpha.inference``, ``alpha.inference_model_a``,
                ``alpha.inference_model_b``, ``alpha.clustering``, ``alpha.policy``,
                ``alpha.synthesis``; merge adapter ``alpha.ensemble``
``risk``        ``risk.optimize``
``backtest``    ``risk.backtest`` (walk-forward equity curve of the portfolio rule)
``dataops``     ``dataops.load``, ``dataops.validate``, ``dataops.clean``
==============  ==================================================================

Every stage reads its settings from ``ctx.params`` (all optional); each module's
docstring lists the ones it uses. The bundled prices and their licence are in
``runner/stages/data`` (see ``SOURCE.md``).
"""

from runner.stages import alpha, backtest, contexts, dataops, foundation, risk
from runner.stages._deferred import deferred_imports
from runner.stages.contexts import DataOpsContext, PortfolioContext

__all__ = [
    "DataOpsContext",
    "PortfolioContext",
    "alpha",
    "backtest",
    "contexts",
    "dataops",
    "deferred_imports",
    "foundation",
    "risk",
]
