"""The README quickstart's stages, as an installable package (``my-stages``).

Installed in an image built ``FROM`` the runner image, they run on the cluster the way
``my_stages.py`` runs beside ``demo.json`` on a laptop: the manifest names them by the
same import paths (``my_stages:load``).
"""

from runner import Context, stage


@stage("demo.load", writes=["feature_store"])
def load(ctx: Context) -> Context:
    ctx.feature_store["price"] = [100.0, 101.5, 99.8, 102.3]
    ctx.log("loaded 4 prices")
    return ctx


@stage("demo.returns", writes=["feature_store"])
def returns(ctx: Context) -> Context:
    ctx.feature_store["ret"] = ctx.feature_store["price"].pct_change()
    return ctx


@stage("demo.trend", writes=["feature_store"])
def trend(ctx: Context) -> Context:
    ctx.feature_store["trend"] = ctx.feature_store["price"].rolling(2).mean()
    return ctx
