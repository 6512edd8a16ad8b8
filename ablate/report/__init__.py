"""The report of an experiment: collect (tables from results and evaluation), stats
(summaries, comparisons, verdicts, ranking), plots, render (HTML / Markdown), build
(a local folder's report), staged (one on object storage), publish (either)."""
