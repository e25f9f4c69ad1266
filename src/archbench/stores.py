"""Whether the stores a run writes to answer: an MLflow tracking server, a database server (MLflow's
or Optuna's). Probed up front (milliseconds), so one that is down, or a database driver that is not
installed, is one line and exit 2 before anything starts, not a traceback after the clients' own
retries (measured here against a closed port: MLflow's HTTP client 4 min, its PostgreSQL store
1 min 45 s). Local sqlite files, journal files and Databricks are not probed."""

from __future__ import annotations

import re

from archbench.errors import ConfigError

PROBE_TIMEOUT_S = 5
DATABASE_SERVERS = ("postgresql", "mysql", "mssql")
# where runs can be tracked: a database or a server (MLflow's file store is in maintenance mode)
TRACKING_SCHEMES = ("sqlite", *DATABASE_SERVERS, "http", "https", "databricks")


def check_tracking_scheme(uri: str, setting: str) -> None:
    """An MLflow tracking URI must name a database or a server (no network: config validation)."""
    if _scheme(uri).split("+", 1)[0] not in TRACKING_SCHEMES:
        raise ConfigError(f"{setting} must be a database or server URI (sqlite:///PATH, "
                          f"postgresql+psycopg2://…, http://HOST:PORT; MLFLOW_TRACKING_URI sets it), got {uri!r}")


def _scheme(uri: str) -> str:
    """``postgresql+psycopg2`` of ``postgresql+psycopg2://…``, lower-cased."""
    return uri.split(":", 1)[0].lower()


def check_tracking_store(uri: str, setting: str) -> None:
    """An MLflow tracking URI's scheme, then whether its server or database answers."""
    check_tracking_scheme(uri, setting)
    check_store(uri, setting)


def check_store(uri: str, setting: str) -> None:
    """Refuse, naming ``setting`` (the config key that holds ``uri``), a server or database that
    does not answer, or whose driver is missing."""
    scheme = _scheme(uri)
    if scheme in ("http", "https"):
        _check_server(uri, setting)
    elif scheme.split("+", 1)[0] in DATABASE_SERVERS:
        _check_database(uri, setting)


def _check_server(uri: str, setting: str) -> None:
    """A server must answer at all (a plain GET, so MLflow's minutes of retries are not paid), then
    answer MLflow's REST API (one experiment search: a server that is not MLflow's, or that refuses
    the credentials, says so here). TLS problems are left to MLflow, whose own settings
    (MLFLOW_TRACKING_INSECURE_TLS, …) may allow them."""
    import requests
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S)
    except requests.exceptions.SSLError:
        return
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
        raise ConfigError(f"{setting}: no server answers at {uri} ({_reason(err)}); start it "
                          f"(mlflow server --host HOST --port PORT) or point {setting} at one that runs") from None
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except MlflowException as err:
        said = " ".join(str(err).split(". Response body")[0].split())
        raise ConfigError(f"{setting}: {uri} answers, but not as an MLflow tracking server that takes "
                          f"this client ({said})") from None


def _check_database(uri: str, setting: str) -> None:
    from sqlalchemy import create_engine, exc, make_url
    from sqlalchemy.pool import NullPool

    try:
        url = make_url(uri)
        dialect = url.get_dialect()
    except (exc.ArgumentError, exc.NoSuchModuleError) as err:
        raise ConfigError(f"{setting}: {err}") from None
    shown = url.render_as_string(hide_password=True)
    try:
        dialect.import_dbapi()
    except ImportError as err:
        hint = (" (archbench's postgres extra installs psycopg2: write postgresql+psycopg2://…)"
                if url.drivername == "postgresql" else "")
        raise ConfigError(f"{setting}: {shown} needs the database driver {dialect.driver!r}, which is "
                          f"not installed ({err}){hint}") from None
    timeout = {"connect_timeout": PROBE_TIMEOUT_S} if url.get_backend_name() in ("postgresql", "mysql") else {}
    engine = create_engine(url, poolclass=NullPool, connect_args=timeout)
    try:
        with engine.connect():
            pass
    except exc.DBAPIError as err:
        reason = " ".join(str(err.orig).split()) if err.orig is not None else type(err).__name__
        raise ConfigError(f"{setting}: cannot connect to {shown} ({reason}); start the database "
                          f"server, or create the database, or point {setting} at one that runs") from None
    finally:
        engine.dispose()


def _reason(err: Exception) -> str:
    """The socket's own words ("Connection refused", "Name or service not known") out of
    requests' nested message, or what kind of failure it was."""
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(err))
    if found:
        return found.group(1).strip()
    return "timed out" if "timed out" in str(err).lower() else type(err).__name__
