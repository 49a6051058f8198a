"""HTML reports: a run, a comparison of runs, a device, the fleet.

``source`` reads what is shown (``DataSource``; ``FolderSource`` over run folders and ``luts/``);
``run_data``, ``compare_data`` and ``device_data`` compute each plot's data (plain frozen records,
tested on values); ``figures`` renders them with plotly; ``pages`` assembles self-contained HTML
(``html``: plotly.js inlined once).
"""

from edgenas.report.pages import compare_page, device_page, fleet_page, run_page, write_html
from edgenas.report.source import DataSource, FolderSource, NotFoundError, RunData, load_run_dir

__all__ = ["DataSource", "FolderSource", "NotFoundError", "RunData", "compare_page", "device_page", "fleet_page",
           "load_run_dir", "run_page", "write_html"]
