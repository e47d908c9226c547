"""The ``syncwd-fast`` group: global options, and library errors turned into messages and exit codes."""

from __future__ import annotations

from typing import Any

import click

from .. import logs, speedups
from ..errors import ConfigurationError, DrainFault
from ..faults import configuration_problem, is_transient
from ..report import EXIT_USAGE
from .options import option
from .output import REPORTING, FaultFailure, UsageFailure, emit_error, json_requested, log, masker


class Main(click.Group):
    """Turns library errors into messages and exit codes, passwords masked;
    with --json, a report line on stdout whatever went wrong."""

    def invoke(self, ctx: click.Context) -> Any:
        args = [*getattr(ctx, "_protected_args", ()), *ctx.args]  # the subcommand and its arguments
        kind = REPORTING.get(tuple(args[:1])) or REPORTING.get(tuple(args[:2]))
        reporting = kind if kind and json_requested(args) else None
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.exceptions.Abort:
            # A confirmation prompt got no answer (stdin closed, as under cron, or ^C/^D): nothing was changed,
            # and click's own exit 1 is no code of these commands.
            failure: UsageFailure = UsageFailure(
                "no answer at the prompt: nothing was changed; give --yes (SYNCWD_YES=1) not to be asked"
            )
        except click.UsageError as exc:
            if reporting:
                emit_error(reporting, exc.format_message(), EXIT_USAGE)
            raise
        except click.ClickException:
            raise
        except (ConfigurationError, ValueError) as exc:
            failure = UsageFailure(str(exc).strip())
        except DrainFault as exc:
            failure = FaultFailure(str(exc).strip())
        except Exception as exc:
            problem = configuration_problem(exc)
            if problem:
                failure = UsageFailure(problem)
            elif is_transient(exc):
                failure = FaultFailure(f"{type(exc).__name__}: {str(exc).strip()}")
            else:  # never a bare traceback
                log.debug("unexpected error", exc_info=True)
                failure = FaultFailure(f"unexpected {type(exc).__name__}: {str(exc).strip()}")
        if reporting:
            emit_error(reporting, failure.message, failure.exit_code)
        raise failure


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    package_name="syncwd-fast",
    message=f"%(prog)s %(version)s (speedups: {speedups.describe()})",
)
@option(
    "--log-level",
    env="SYNCWD_LOG_LEVEL",
    type=click.Choice(logs.LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Messages at this level and above (stderr).",
)
@option(
    "--log-format",
    env="SYNCWD_LOG_FORMAT",
    type=click.Choice(logs.FORMATS),
    default="text",
    show_default=True,
    help="text: a line with the time; json: one object a line (time, level, logger, message, and table, partition,"
    " run, rows, seconds where known). Passwords are masked in both.",
)
@option(
    "--quiet",
    "-q",
    env="SYNCWD_QUIET",
    is_flag=True,
    help="Errors only: no warnings, no progress line, no summary (--json output is printed all the same).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str, log_format: str, quiet: bool) -> None:
    """Keep hot records in Redis and drain them to PostgreSQL in bulk.

    These options go before the command (syncwd-fast --quiet drain ...), or
    in their environment variables."""
    ctx.obj = {"quiet": quiet}
    logs.configure("error" if quiet else log_level, log_format, masker)
