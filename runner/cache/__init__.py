"""The step cache (issue 17): a step whose inputs and code are unchanged is not run,
its outputs are restored from the artifact store, which laptops and pods share.

- :mod:`runner.cache.keys`: a step's key (code version, read fields' content hashes,
  context type, format version) and why two keys differ;
- :mod:`runner.cache.code` and :mod:`runner.cache.fields`: a stage's code version and a
  field's content hash;
- :mod:`runner.cache.entries`: the signed entry of a key (what the step wrote);
- :mod:`runner.cache.outputs`: output fields to content-addressed objects
  (:mod:`runner.artifacts.objects`) and back;
- :mod:`runner.cache.step_cache`: :class:`~runner.cache.step_cache.StepCache`, all of it
  behind four calls (key, lookup, fill, explain), what the engine will be handed.

The engine does not import this package: the front door hands it what it needs.
"""
