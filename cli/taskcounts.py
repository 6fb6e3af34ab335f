"""taskcounts: read a deployment's task counts from a terminal.

    taskcounts get JOB_ID [--json]       the counts once (JSON for scripts)
    taskcounts watch JOB_ID              live progress bars until no task is active or running
    taskcounts jobs [--state S] [--alert A] [--prefix P] [--limit N]   jobs, newest change first

Rate, ETA and the stalled and failing flags are the API's "progress" object, as the dashboard shows them.

--url (or TASKCOUNTS_URL) is the function app's base URL, e.g. https://contoso-taskcounts.azurewebsites.net;
--key (or TASKCOUNTS_KEY) the app's read key; or, where the app uses Microsoft Entra ID, --entra (or
TASKCOUNTS_ENTRA) the app registration's URI, e.g. api://<application id>: a token for it comes from
DefaultAzureCredential (az login, a managed identity, environment variables). --account (or
TASKCOUNTS_ACCOUNT) names a Batch account other than the deployment's default one: its job, or only
its jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from shared.events import parse_timestamp

BUCKETS = ("active", "running", "completed", "succeeded", "failed")
COLOURS = {"active": "yellow", "running": "cyan", "completed": "blue", "succeeded": "green", "failed": "red"}


class CliError(Exception):
    """A problem the person can fix; printed without a traceback. ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


class Api:
    """``key``: a read key; or ``credential`` (an azure-core TokenCredential) and ``audience``, the app
    registration's URI, for a Microsoft Entra ID bearer token."""

    def __init__(
        self, url: str, key: str | None, timeout: float = 10.0, credential: Any = None, audience: str | None = None
    ):
        if not url.startswith(("http://", "https://")):
            raise CliError(f"--url must start with http:// or https://, got {url!r}")
        if (credential is None) != (audience is None):
            raise CliError("a token needs both a credential and the app registration's URI")
        self.base, self.key, self.timeout = url.rstrip("/"), key, timeout
        self.credential, self.audience = credential, audience

    def get(self, path: str) -> Any:
        request = urllib.request.Request(f"{self.base}/api/{path}", headers={"Accept": "application/json"})
        if self.credential is not None:
            request.add_header("Authorization", f"Bearer {self._token()}")
        elif self.key:
            request.add_header("x-functions-key", self.key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raise self._explain(error) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach {self.base}: {reason}") from None
        except ValueError:
            raise CliError(f"{self.base} answered something that is not JSON: is it a taskcounts deployment?") from None

    def _explain(self, error: urllib.error.HTTPError) -> CliError:
        try:
            body = json.loads(error.read() or b"{}")
        except ValueError:
            body = {}
        code = body.get("code") if isinstance(body, dict) else None
        message = body.get("message", {}).get("value") if isinstance(body, dict) and code else None
        if error.code == 401 and self.credential is not None:
            return CliError(
                f"the token was refused (HTTP 401): is {self.audience} the app registration of {self.base}?"
            )
        if error.code == 401:
            return CliError(
                "the key was refused (HTTP 401): pass the app's read key with --key or TASKCOUNTS_KEY "
                "(or, where the app uses Entra ID, --entra api://<application id>)"
            )
        if error.code == 403:
            return CliError(
                "signed in, but this identity lacks the app role TaskCounts.Read (HTTP 403): "
                "ask the app's owner to assign it"
            )
        if code == "JobNotFound":
            return CliError(f"no such job: {message}", code=1)
        if code == "AccountNotFound":
            return CliError(f"no such account: {message} (--account names a Batch account the app counts)", code=1)
        if error.code == 404:
            return CliError(f"no taskcounts API at {self.base} (HTTP 404): give the function app's base URL")
        return CliError(f"HTTP {error.code} {code or ''}: {message or error.reason}".strip())

    def _token(self) -> str:
        try:
            return self.credential.get_token(f"{self.audience.rstrip('/')}/.default").token
        except Exception as error:  # azure-identity raises several kinds; each says what to do
            raise CliError(
                f"no Microsoft Entra ID token for {self.audience}: {str(error).splitlines()[0]} (sign in with az login)"
            ) from None

    def counts(self, job_id: str, account: str | None = None) -> dict:
        """A job's counts; ``account``: a job of that Batch account (else the deployment's default one)."""
        prefix = f"accounts/{urllib.parse.quote(account, safe='')}/" if account else ""
        return self.get(f"{prefix}jobs/{urllib.parse.quote(job_id, safe='')}/taskcounts")

    def jobs(self, account: str | None = None, limit: int | None = None, **filters: str | None) -> list[dict]:
        """The jobs list, newest change first, every page (or the first ``limit`` jobs); ``filters``:
        state, alert, prefix, as the API takes them."""
        query = {"maxresults": "100", "account": account, **filters}
        jobs: list[dict] = []
        path: str | None = "jobs?" + urllib.parse.urlencode({name: value for name, value in query.items() if value})
        while path and (limit is None or len(jobs) < limit):
            page = self.get(path)
            jobs += page["value"]
            link = page.get("odata.nextLink")
            path = link.split("/api/", 1)[1] if link else None
        return jobs[:limit]


def total_of(counts: dict) -> int:
    return counts["active"] + counts["running"] + counts["completed"]


def bar(value: int, total: int, width: int = 40, colour: str = "white") -> Text:
    filled = 0 if total <= 0 else round(width * value / total)
    return Text("█" * filled, style=colour) + Text("░" * (width - filled), style="grey37")


def counts_table(title: str, body: dict, compare: dict[str, dict] | None = None, heading: str = "tasks") -> Table:
    """Progress bars per bucket; ``compare`` adds a column per other set of counts (e.g. the simulator's truth),
    a number that differs from ``body``'s in magenta."""
    counts = body["taskCounts"]
    total = total_of(counts)
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("state")
    table.add_column("progress")
    table.add_column(heading, justify="right")
    for column in compare or {}:
        table.add_column(column, justify="right")
    for name in BUCKETS:
        row = [
            Text(("  " if name in ("succeeded", "failed") else "") + name, style=COLOURS[name]),
            bar(counts[name], total, colour=COLOURS[name]),
            str(counts[name]),
        ]
        for other in (compare or {}).values():
            row.append(Text(str(other[name]), style="bold" if other[name] == counts[name] else "bold magenta"))
        table.add_row(*row)
    if "validationStatus" in body:  # an API body; the simulator's truth has no freshness
        table.caption = freshness(body)
        table.caption_justify = "left"
    return table


def rate_text(progress: dict) -> str:
    rate = progress.get("completionsPerMinute")
    return "-" if rate is None else f"{rate:,.1f}/min"


def eta_text(progress: dict) -> str:
    eta = progress.get("eta")
    return "-" if eta is None else f"{_local_clock(eta)} (in {_age_until(eta)})"


def alerts_text(progress: dict) -> str:
    flags = []
    if progress.get("stalledSince"):
        flags.append(f"stalled since {_local_clock(progress['stalledSince'])}")
    if progress.get("failing"):
        flags.append(f"failing {round(100 * progress['recentFailureRatio'])}%")
    return ", ".join(flags)


def progress_text(body: dict) -> str:
    progress = body.get("progress") or {}
    parts = [f"rate {rate_text(progress)}", f"ETA {eta_text(progress)}"]
    alerts = alerts_text(progress)
    return " | ".join(parts + ([alerts.upper()] if alerts else []))


def freshness(body: dict) -> str:
    parts = [progress_text(body), f"validation: {body.get('validationStatus', '?')}"]
    if body.get("lastValidatedAt"):
        parts.append(f"validated {_age(body['lastValidatedAt'])} ago")
    if body.get("validationNote"):
        parts.append(body["validationNote"])
    if body.get("lastUpdatedAt"):
        parts.append(f"last change {_age(body['lastUpdatedAt'])} ago")
    corrected = (body.get("lastValidation") or {}).get("corrected")
    if corrected:
        parts.append("last pass corrected " + ", ".join(f"{v} {k}" for k, v in corrected.items()))
    return " | ".join(parts)


def _age(iso: str) -> str:
    return _duration((datetime.now(UTC) - parse_timestamp(iso)).total_seconds())


def _age_until(iso: str) -> str:
    return _duration((parse_timestamp(iso) - datetime.now(UTC)).total_seconds())


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60}m" if seconds < 7200 else f"{seconds // 3600}h"


def _local_clock(iso: str) -> str:
    return parse_timestamp(iso).astimezone().strftime("%H:%M")


def done(counts: dict) -> bool:
    return total_of(counts) > 0 and counts["active"] == 0 and counts["running"] == 0


def watch(api: Api, job_id: str, interval: float, console: Console, account: str | None = None) -> int:
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            try:
                body = api.counts(job_id, account)
                live.update(counts_table(f"{job_id}  ({total_of(body['taskCounts'])} tasks)", body))
                if done(body["taskCounts"]):
                    return 0
            except CliError as error:
                if error.code == 1 or "401" in str(error) or "404" in str(error):
                    raise
                live.update(Group(Text(f"retrying: {error}", style="red")))
            time.sleep(interval)


def _entra(audience: str | None) -> dict:
    if not audience:
        return {}
    from azure.identity import DefaultAzureCredential  # only where the app uses Entra ID

    return {"credential": DefaultAzureCredential(), "audience": audience}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="taskcounts",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--url", default=os.environ.get("TASKCOUNTS_URL"), help="the function app's base URL")
    parser.add_argument("--key", default=os.environ.get("TASKCOUNTS_KEY"), help="the app's read key")
    parser.add_argument(
        "--entra",
        default=os.environ.get("TASKCOUNTS_ENTRA"),
        metavar="APP_URI",
        help="sign in with Microsoft Entra ID for this app registration (api://<application id>)",
    )
    parser.add_argument(
        "--account", default=os.environ.get("TASKCOUNTS_ACCOUNT"), help="a Batch account other than the default one"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("get", help="the counts of one job")
    get.add_argument("job_id")
    get.add_argument("--json", action="store_true", help="print the API's JSON body")
    watcher = commands.add_parser("watch", help="live progress of one job until it completes")
    watcher.add_argument("job_id")
    watcher.add_argument("--interval", type=float, default=2.0)
    lister = commands.add_parser("jobs", help="jobs with their counts, newest change first")
    lister.add_argument("--state", choices=("active", "finished"), help="jobs with tasks left, or none")
    lister.add_argument("--alert", choices=("any", "stalled", "failing"), help="jobs with that alert")
    lister.add_argument("--prefix", help="jobs whose id starts with this (then by id)")
    lister.add_argument("--limit", type=int, default=100, help="at most this many jobs (0: every one)")
    args = parser.parse_args(argv)
    console = Console()
    try:
        if not args.url:
            raise CliError("give the deployment's URL with --url or TASKCOUNTS_URL")
        api = Api(args.url, args.key, **_entra(args.entra))
        if args.command == "get":
            body = api.counts(args.job_id, args.account)
            if args.json:
                print(json.dumps(body, indent=2))
            else:
                console.print(counts_table(args.job_id, body))
        elif args.command == "watch":
            return watch(api, args.job_id, args.interval, console, args.account)
        else:
            table = Table("job", "account", *BUCKETS, "rate", "ETA", "validation", "alerts", show_edge=False)
            chosen = api.jobs(args.account, args.limit or None, state=args.state, alert=args.alert, prefix=args.prefix)
            for job in chosen:
                progress = job.get("progress") or {}
                table.add_row(
                    job["id"],
                    job.get("account") or "",
                    *(str(job["taskCounts"][b]) for b in BUCKETS),
                    rate_text(progress),
                    eta_text(progress),
                    job["validationStatus"],
                    Text(alerts_text(progress), style="bold red"),
                )
            console.print(table)
        return 0
    except CliError as error:
        Console(stderr=True).print(f"[red]taskcounts: {error}[/red]")
        return error.code
    except KeyboardInterrupt:
        return 130
