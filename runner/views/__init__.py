"""What shows a run to a person, read from what the run left on the store.

- :mod:`runner.views.report`: the HTML report (``runner report``), one self-contained
  page rendered from ``templates/report.html.j2`` (and ``results.html.j2``);
- :mod:`runner.views.trace`: the span tree in the terminal (``runner trace``), and the
  formatting both share ("12.3 ms", "3.1 MB");
- :mod:`runner.views.dag` and :mod:`runner.views.timeline`: the report's drawings, laid
  out in Python at scale 1 (:mod:`runner.views.textwidth` fits their labels);
- :mod:`runner.views.results`: the report's Results section, from ``results.json``;
- :mod:`runner.views.bounds`: how deep a plan outline read back may nest.

"Report" means the HTML page only (the run's ``results.json`` keeps what the final
context's ``report()`` method returned under the key ``"report"``: the user's word for
its summary, shown as the page's Results section). The engine never imports this package (an
import-linter contract holds it): views read documents, they do not run anything.
Tracing itself (the hook, the tracer, OTLP export, the spans file) is
:mod:`runner.telemetry`.
"""
