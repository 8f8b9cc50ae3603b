"""``dxassist listen``: a DICOM node (C-ECHO and C-STORE SCP) that analyses the studies a PACS sends.

Each received instance is validated and decoded on arrival (:func:`read_instance`); a refused one is
answered with a DIMSE failure status and the association stays up. An accepted one is written durably
under ``DXASSIST_HOME/incoming/<study>/<sop>.dcm`` before the success status goes out. Once a study has
been quiet for ``dimse_stable_seconds`` it is analysed by the same service as an HTTP upload
(:func:`inference.services.analyse_decoded`, which also queues its SR and heatmap captures for every
destination), and its folder is removed; a study whose patient objected to AI processing is dropped.
Folders left by a stopped listener are analysed at the next start.

Every log line of an association carries its id (``assoc-<hex>``, as ``request_id``), and each analysis
of a study its own (``analysis-<hex>``), which its audit entries carry too; the analysis's first line
names the associations that delivered the study's instances (docs/operations.md, "Correlation ids").

An analysis that fails (model not loaded, database down, a bug) is tried again with exponential backoff,
``dimse_max_attempts`` times in all; then the study's folder moves to
``DXASSIST_HOME/dead-letter/studies`` (counted in ``dxassist_dead_lettered_total{kind="study"}``, listed
by ``dxassist dead-letter list``), so ``incoming/`` holds only studies still in progress.

This module starts the listener and runs its analysis loop; an association's checks and TLS are in
:mod:`._association`, the node registry and its audit in :mod:`._nodes`, receiving and spooling instances
in :mod:`._receive`, and the analysis of a stable study (and of late instances) in :mod:`._analysis`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from inference.dicom import (
    ACCEPTED_SOP_CLASSES,
    SUPPORTED_TRANSFER_SYNTAXES,
    StudyCollector,
)
from inference.dicom._stable import DEAD_STUDIES_DIR, StableStudy
from inference.dimse._analysis import _analyse
from inference.dimse._association import (
    CannotListen,
    _on_data,
    _on_established,
    _on_lifecycle,
    _on_rejected,
    _on_requested,
    _tls_context,
    _TransportFailures,
)
from inference.dimse._connections import (
    guarded_server_class,
)
from inference.dimse._identity import (
    forget,
)
from inference.dimse._nodes import _Node, _NodeAudit
from inference.dimse._receive import (
    RECEIVING_DIR,
    _check_reserve,
    _on_store,
    _receive_to_disk,
    _sweep_spool,
)
from inference.dimse._shared import SharedStudyCollector, instance_name
from inference.observability import (
    MetricsExporter,
    correlated,
    new_correlation_id,
)
from inference.observability._exporter import PATH as METRICS_PATH
from inference.record import RecordError

if TYPE_CHECKING:
    from inference.config import DimseSettings, Settings
    from inference.services import Context

logger = logging.getLogger(__name__)

VERIFICATION: Final = "1.2.840.10008.1.1"
INCOMING_DIR: Final = "incoming"
LOG_FILE: Final = "listener.jsonl"

_TICK_SECONDS: Final = 0.25
_RESCAN_SECONDS: Final = 2.0
# The analysis loop's longest expected round: a large study's analysis under load, with its database waits.
_STUCK_SECONDS: Final = 600.0
_NO_TITLE: Final = " "  # no calling AE title strips to this, so a registry without nodes refuses every AE


def _make_ae(ae_title: str, dimse: DimseSettings, node: _Node) -> tuple[Any, list[Any]]:
    from pynetdicom import AE, evt

    ae = AE(ae_title=ae_title)
    ae.add_supported_context(VERIFICATION)
    for sop_class in sorted(ACCEPTED_SOP_CLASSES):
        ae.add_supported_context(sop_class, sorted(SUPPORTED_TRANSFER_SYNTAXES))
    if dimse.dimse_open_facility is None:
        # Only registered nodes may associate: an unknown calling AE gets A-ASSOCIATE-RJ (calling AE title
        # not recognised). pynetdicom treats an empty list as "any", so no node at all means a title that
        # nobody can send.
        titles = [n.ae_title.strip() for n in dimse.dimse_nodes]
        ae._require_calling_aet = titles or [_NO_TITLE]  # the setter refuses the impossible title
    # Decoding a large radiograph takes a moment: do not drop a sender waiting for its C-STORE response.
    ae.dimse_timeout = 120
    ae.network_timeout = dimse.dimse_network_timeout
    # Connections over the bounds are closed on arrival (_connections); none reaches this one.
    ae.maximum_associations = dimse.dimse_max_associations
    handlers = [
        (evt.EVT_C_STORE, _on_store, [node]),
        (evt.EVT_ESTABLISHED, _on_established, [node]),
        (evt.EVT_DATA_RECV, _on_data, [node]),
        (evt.EVT_REQUESTED, _on_requested),
        (evt.EVT_ACCEPTED, _on_lifecycle, ["accepted"]),
        (evt.EVT_REJECTED, _on_lifecycle, ["refused"]),
        (evt.EVT_REJECTED, _on_rejected, [node]),
        (evt.EVT_RELEASED, _on_lifecycle, ["released"]),
        (evt.EVT_ABORTED, _on_lifecycle, ["aborted"]),
    ]
    return ae, handlers


async def listen(
    settings: Settings,
    *,
    ae_title: str = "DXASSIST",
    port: int | None = None,
    host: str = "127.0.0.1",
    stop: asyncio.Event | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run the DICOM listener, the study analysis loop and the outbox worker until ``stop`` is set.

    Args:
        settings: Process settings (``DXASSIST_HOME``, limits, PACS settings).
        ae_title: The listener's AE title (the called AE title senders use).
        port: TCP port; ``dimse_port`` of the PACS settings when None.
        host: Address to bind (loopback by default).
        stop: Set it to stop; SIGINT and SIGTERM set it when None.
        metrics_port: Port of ``GET /metrics`` on ``dimse_metrics_host``; ``dimse_metrics_port`` when
            None, and none served when that is None too.

    Raises:
        CannotListen: The DICOM or the metrics address cannot be bound (a port in use), or the TLS
            certificate, key or authorities cannot be loaded.
    """
    dimse = settings.dimse
    port = dimse.dimse_port if port is None else port
    metrics_port = dimse.dimse_metrics_port if metrics_port is None else metrics_port
    # Loaded and bound before anything starts, so a bad file or a port in use stops it at once.
    _check_reserve(settings.listener_spool, dimse.dimse_min_free_bytes)
    tls = _tls_context(dimse)
    exporter = None
    if metrics_port is not None:
        try:
            exporter = MetricsExporter(dimse.dimse_metrics_host, metrics_port)
        except OSError as e:
            raise CannotListen(
                f"The listener's metrics cannot be served on {dimse.dimse_metrics_host}:{metrics_port} "
                f"({e.strerror or type(e).__name__})."
            ) from e
    quiet = _TransportFailures()
    logging.getLogger("pynetdicom.dul").addFilter(quiet)
    try:
        await _listen(
            settings, ae_title=ae_title, port=port, host=host, stop=stop, exporter=exporter, tls=tls
        )
    finally:
        logging.getLogger("pynetdicom.dul").removeFilter(quiet)
        if exporter is not None:
            await asyncio.to_thread(exporter.stop)


class _Health:
    """What ``GET /healthz`` of the listener's metrics port checks (Kubernetes probes it).

    Unhealthy when the DICOM acceptor's thread has ended (no association can start), or when the loop that
    analyses received studies has shown no progress (a tick, a study done) for :data:`_STUCK_SECONDS`: a
    loop stuck that long holds every received study.
    """

    def __init__(self, acceptor: threading.Thread) -> None:
        self._acceptor = acceptor
        self._beat = time.monotonic()

    def beat(self, now: float) -> None:
        self._beat = now

    def problem(self) -> str | None:
        if not self._acceptor.is_alive():
            return "the DICOM acceptor has stopped: no association can start"
        stuck = time.monotonic() - self._beat
        if stuck > _STUCK_SECONDS:
            return f"the analysis of received studies has not come round for {stuck:.0f} s"
        return None


async def _listen(
    settings: Settings,
    *,
    ae_title: str,
    port: int,
    host: str,
    stop: asyncio.Event | None,
    exporter: MetricsExporter | None,
    tls: ssl.SSLContext | None,
) -> None:
    from inference.services import open_context

    dimse = settings.dimse
    stop = stop if stop is not None else _stop_on_signals()
    spool = settings.listener_spool
    shared = dimse.dimse_grouping == "database"
    owner = instance_name() if shared else None
    receiving = spool / RECEIVING_DIR
    if owner is not None:
        # Instances share the spool, not their partial transfers: each cleans only its own at start.
        receiving = receiving / owner
    _receive_to_disk(receiving)
    # The same engines as the HTTP API, the outbox worker included (it stops before the models).
    async with open_context(settings) as ctx:
        collector: StudyCollector
        if owner is not None:
            collector = SharedStudyCollector(
                spool / INCOMING_DIR,
                quiet_seconds=dimse.dimse_stable_seconds,
                claims=ctx.record.dimse_studies,
                owner=owner,
                lease_seconds=dimse.dimse_lease_seconds,
            )
            logger.info("DICOM listener instance %s shares its spool and grouping", owner)
        else:
            collector = StudyCollector(spool / INCOMING_DIR, quiet_seconds=dimse.dimse_stable_seconds)
        recovered = await asyncio.to_thread(collector.recover)
        if recovered:
            logger.info("%d received studies from a previous run will be analysed", len(recovered))
        try:
            target = ctx.host.imaging.imaging_meta.input_size
        except Exception:  # no model yet: decode at full resolution on arrival
            target = None
        titles = frozenset(n.ae_title.strip() for n in dimse.dimse_nodes)
        node = _Node(
            collector=collector,
            limits=ctx.limits,
            target_size=target,
            min_free=dimse.dimse_min_free_bytes,
            registry=dimse.node_facility,
            certified=dimse.node_certified,
            pinned=dimse.node_pinned,
            refused=_NodeAudit(ctx.record, dimse.node_facility, registered=titles),
            # Once an hour per node, address and certificate: a new certificate at its first association.
            accepted=_NodeAudit(
                ctx.record, dimse.node_facility, registered=titles, outcome="success", every=3600.0
            ),
        )
        if dimse.dimse_allowed_aets:
            logger.warning(
                "DXASSIST_DIMSE_ALLOWED_AETS is no longer used: register each node with its facility in "
                "DXASSIST_DIMSE_NODES",
                extra={"code": "deprecated_setting"},
            )
        ae, handlers = _make_ae(ae_title, dimse, node)
        try:
            server = ae.make_server(
                (host, port),
                evt_handlers=handlers,
                ssl_context=tls,
                # A failed handshake is a node-authentication failure too (no AE title known yet).
                server_class=guarded_server_class(
                    dimse, on_handshake_failure=lambda address, code: node.refused("", address, code, None)
                ),
            )
        except OSError as e:
            raise CannotListen(
                f"The DICOM listener cannot listen on {host}:{port} ({e.strerror or type(e).__name__})."
            ) from e
        acceptor = threading.Thread(target=server.serve_forever, name="dxassist-dimse-accept", daemon=True)
        acceptor.start()
        health = _Health(acceptor)
        logger.info(
            "DICOM listener %s on %s:%d (C-ECHO, C-STORE%s)",
            ae_title,
            host,
            port,
            ", TLS only" if dimse.dimse_tls else "",
            extra={"event": "listening"},
        )
        if exporter is not None:
            exporter.start(health=health.problem)
            logger.info(
                "listener metrics on %s:%d%s",
                dimse.dimse_metrics_host,
                exporter.port,
                METRICS_PATH,
                extra={"event": "metrics_listening"},
            )
        retry = _Retry(
            max_attempts=dimse.dimse_max_attempts,
            base=dimse.dimse_retry_seconds,
            cap=settings.delivery.delivery_backoff_cap_seconds,
            dead_root=spool / DEAD_STUDIES_DIR,
        )
        rescanned = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                health.beat(now)
                try:
                    if now - rescanned >= _RESCAN_SECONDS:
                        # Studies an operator released from the dead-letter folder.
                        await asyncio.to_thread(collector.rescan)
                        await asyncio.to_thread(
                            _sweep_spool, spool / RECEIVING_DIR, own=receiving if owner else None
                        )
                        rescanned = now
                    while not stop.is_set() and (studies := await asyncio.to_thread(collector.stable)):
                        for study in studies:
                            await _process(ctx, collector, study, retry, node=node)
                            health.beat(time.monotonic())
                except RecordError:
                    # The database holding the shared grouping state is down: the files stay in the spool,
                    # claims that are not renewed run out, and the next tick tries again.
                    logger.warning(
                        "the shared grouping state of received studies could not be read or written",
                        exc_info=True,
                        extra={"code": "grouping_unavailable"},
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=_TICK_SECONDS)
        finally:
            await asyncio.to_thread(server.shutdown)
            logger.info("DICOM listener stopped", extra={"event": "shutdown"})


@dataclass(frozen=True)
class _Retry:
    """How often, and how long apart, a failing study is analysed before it becomes a dead letter."""

    max_attempts: int
    base: float
    cap: float
    dead_root: Path


async def _process(
    ctx: Context, collector: StudyCollector, study: StableStudy, retry: _Retry, *, node: _Node | None = None
) -> None:
    """Analyse a stable study under a fresh analysis id (its log lines and audit entries carry it).

    A listener sharing its studies with other instances renews its claim while the analysis runs.
    """
    associations = node.associations(study.key) if node is not None else []
    keeper = asyncio.create_task(_keep(collector, study)) if collector.lease_seconds else None
    with correlated(new_correlation_id("analysis")):
        logger.info(
            "analysing a received study",
            extra={"event": "dimse_analysis", "instances": len(study.files), "associations": associations},
        )
        try:
            remove = await _analyse(ctx, study)
        except Exception as e:  # model not loaded, database down, a bug: keep the files, try again later
            await _stop_keeping(keeper)
            await asyncio.to_thread(_failed, collector, study, retry, e)
        else:
            await _stop_keeping(keeper)
            await asyncio.to_thread(collector.done, study, remove=remove)
            if remove:
                await asyncio.to_thread(forget, study.folder)  # the certificates that delivered it
    if node is not None and not study.folder.exists():
        node.forget(study.key)


async def _keep(collector: StudyCollector, study: StableStudy) -> None:
    """Renew this instance's claim on ``study`` while it is analysed (every third of the lease)."""
    interval = (collector.lease_seconds or 60.0) / 3
    while True:
        await asyncio.sleep(interval)
        try:
            held = await asyncio.to_thread(collector.keep, study)
        except RecordError:
            logger.warning("the claim on a study being analysed could not be renewed", exc_info=True)
            continue
        if not held:
            # Its lease ran out (the database was unreachable for longer than it): another instance may
            # analyse it too; the record's idempotency files one result for the same instances.
            logger.warning("the claim on a study being analysed was lost", extra={"code": "claim_lost"})
            return


async def _stop_keeping(keeper: asyncio.Task[None] | None) -> None:
    if keeper is None:
        return
    keeper.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await keeper


def _failed(collector: StudyCollector, study: StableStudy, retry: _Retry, error: Exception) -> None:
    """Count a failed analysis; retry with backoff, or move the study to the dead-letter folder."""
    from inference.delivery import backoff
    from inference.delivery._worker import error_code
    from inference.observability import count_dead_lettered, count_retry

    code = error_code(error, "analysis_failed")
    try:
        attempts = collector.count_attempt(study)
    except OSError:  # the disk is full or gone: the files stay, the next try counts again
        attempts = 1
    if attempts < retry.max_attempts:
        delay = backoff(attempts, base=retry.base, cap=retry.cap)
        logger.warning(
            "a received study could not be analysed now; it is kept and tried again (%s)",
            type(error).__name__,
            exc_info=(type(error), error, error.__traceback__),
            extra={"event": "study_retry", "code": code, "attempts": attempts, "retry_in_seconds": delay},
        )
        count_retry("study", code)
        collector.retry_later(study, delay=delay)
        return
    reason = {
        "code": code,
        "error": f"The analysis failed ({type(error).__name__}); gave up after {attempts} attempts.",
        "attempts": attempts,
        "dead_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        collector.quarantine(study, retry.dead_root, reason)
    except OSError:
        logger.exception("a failing study could not be moved to the dead-letter folder")
        collector.retry_later(study, delay=retry.cap)
        return
    count_dead_lettered("study", code)
    logger.error(
        "a received study moved to the dead-letter folder; `dxassist dead-letter retry` analyses it again",
        exc_info=(type(error), error, error.__traceback__),
        extra={"event": "study_dead", "code": code, "attempts": attempts},
    )


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def run_listener(
    settings: Settings,
    *,
    ae_title: str = "DXASSIST",
    port: int | None = None,
    host: str = "127.0.0.1",
    metrics_port: int | None = None,
) -> None:
    """Blocking entry point of ``dxassist listen``: run :func:`listen` until SIGINT or SIGTERM.

    Args:
        settings: Process settings.
        ae_title: The listener's AE title.
        port: TCP port (``DXASSIST_DIMSE_PORT``, default 11112, when None).
        host: Address to bind; keep loopback unless the PACS is on another machine.
        metrics_port: Port of the listener's ``GET /metrics`` (``DXASSIST_DIMSE_METRICS_PORT`` when None;
            not served when both are unset).
    """
    from inference.observability import configure_logging

    configure_logging(
        level=settings.logs.log_level,
        log_file=settings.log_path(LOG_FILE),
        max_bytes=settings.logs.log_max_bytes,
        backups=settings.logs.log_backups,
    )
    asyncio.run(listen(settings, ae_title=ae_title, port=port, host=host, metrics_port=metrics_port))
