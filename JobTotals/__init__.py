"""GET /api/totals: the fleet's and each account's totals of tasks and jobs; the jobs list's glue
(ListJobs) over shared.api."""

from ListJobs import reading_route
from shared import api

main = reading_route(api.job_totals)
