"""Moves of a served model's aliases, audited: the registry decisions an operator makes (``dxassist
registry promote`` / ``rollback``) and the moves of ``dxassist train --register`` (a new ``challenger``)
and ``dxassist bootstrap`` (first champions), through :class:`AuditedMoves`.

The aliases live in MLflow and the audit trail in the patient record: no transaction spans
both. So each decision writes two entries sharing one correlation id (``registry-<hex>`` in
``request_id``): first the **attempt** (outcome ``attempt``), before the registry is touched, so a
record that cannot be written stops the decision before anything moves; then, right after the registry
call, its **outcome**: ``success`` (the alias moved), ``unchanged`` (already champion), ``refused`` (the
promotion gate said no, or the target is a version this server cannot load; nothing moved) or
``failure`` (the registry failed and the alias is not where the decision wanted it). If the outcome
entry cannot be written once the alias has moved, :class:`DecisionNotAudited` says so (``changed``);
the attempt entry is in the trail either way, so no change of the model in service is missing from it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from inference.observability import correlated, current_request_id, new_correlation_id
from inference.record import RecordError
from inference.runtime import TRIAGE_MODEL
from inference.security import Role
from inference.services._errors import ServiceError
from model_registry import CHALLENGER, CHAMPION, PromotionRefused, RegistryError

if TYPE_CHECKING:
    from inference.record import Record
    from model_registry import GateDecision, RegistryClient, ShadowEvidence

logger = logging.getLogger(__name__)

PROMOTE: Final = "model:promote"
ROLLBACK: Final = "model:rollback"
REGISTER: Final = "model:register"
"""A new version given the ``challenger`` alias (``dxassist train --register``, ``bootstrap``)."""
OPERATOR_ROLE: Final = Role.ML_ENGINEER.value
"""The role of registry entries: the command line checks no token, and moving models is ML engineering."""
CLI_PREFIX: Final = "cli:"
_ALIAS_OF: Final = {PROMOTE: CHAMPION, ROLLBACK: CHAMPION, REGISTER: CHALLENGER}
_OPERATOR: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")


ServingProblem = Callable[[str, str], str | None]
"""``(name, version)`` → why this server cannot load that version (``None`` when it loads)."""


class VersionUnservable(ServiceError):
    """A promotion or rollback targets a version this server cannot load; nothing moved.

    The refusal is in the audit trail (outcome ``refused``).

    Attributes:
        name: Registered model name.
        version: The version that was refused.
        problem: Why the server cannot load it (the loader's own sentence).
    """

    def __init__(self, message: str, *, name: str, version: str, problem: str) -> None:
        super().__init__(message)
        self.name = name
        self.version = version
        self.problem = problem


class DecisionNotAudited(ServiceError):
    """The audit trail could not record a registry decision.

    Attributes:
        changed: Whether the registry moved anyway (the attempt entry is then in the trail, its outcome
            is not: an operator records it by hand).
    """

    def __init__(self, message: str, *, changed: bool) -> None:
        super().__init__(message)
        self.changed = changed


@dataclass(frozen=True)
class Decision:
    """What a promotion, a rollback or a registration did, and where the audit trail holds it.

    Attributes:
        name: Registered model name.
        version: The version the alias (``champion``; ``challenger`` for a registration) points at now.
        previous: The version it pointed at before (``None`` if the alias was not set).
        outcome: ``success`` (the alias moved) or ``unchanged`` (it was there already).
        seq: The sequence number of the outcome entry (the ``id`` of its FHIR AuditEvent).
        request_id: The correlation id both entries carry (``registry-<hex>``).
    """

    name: str
    version: str
    previous: str | None
    outcome: str
    seq: int
    request_id: str


def operator_subject(operator: str) -> str:
    """The audit subject of an operator on the command line: ``cli:<operator>``.

    Raises:
        ValueError: The name is empty, longer than 100 characters or has characters other than letters,
            digits and ``. _ @ + -`` (it must be a login or an account name, never a patient's).
    """
    if not _OPERATOR.match(operator):
        raise ValueError(
            "The operator must be a login or account name: 1 to 100 letters, digits and . _ @ + - "
            "(give it with --operator NAME)."
        )
    return f"{CLI_PREFIX}{operator}"


def promote_model(
    *,
    record: Record,
    registry: RegistryClient,
    name: str,
    version: str,
    subject: str,
    evidence: ShadowEvidence | None = None,
    min_shadow_studies: int = 0,
    min_reader_verdicts: int = 0,
    champion_unservable: bool = False,
    serving_problem: ServingProblem | None = None,
) -> tuple[Decision, GateDecision]:
    """Run the promotion gate and move ``champion`` to ``version``, audited (action ``model:promote``).

    ``champion_unservable`` is the registry's (``bootstrap`` replacing a champion the server cannot load).
    ``serving_problem`` (``dxassist registry promote``: the server's own loader) is asked first: a
    version it cannot load is refused before the gate runs.

    Returns:
        What was done and where it is audited, and the gate's decision (figures, evidence, reason).

    Raises:
        PromotionRefused: The gate refused; the refusal is in the trail (outcome ``refused``).
        VersionUnservable: ``serving_problem`` says the server cannot load ``version``; the refusal is in
            the trail (outcome ``refused``).
        DecisionNotAudited: The attempt could not be written (nothing moved), or the outcome after the
            alias moved.
        model_registry.RegistryError: The model or version does not exist (nothing written), or the
            registry failed during the move (outcome ``failure``, unless the alias moved).
        ValueError: A name or version the registry does not accept.
    """
    with _correlation() as request_id:
        # A version that does not exist is refused before anything is written: nothing was decided.
        candidate = registry.get_version(name, version).version
        _attempt(record, subject, PROMOTE, name, candidate)
        _refuse_unservable(
            record, registry, subject, PROMOTE, name, candidate, request_id, serving_problem, "move to"
        )
        try:
            gate = registry.promote(
                name,
                candidate,
                evidence=evidence,
                min_shadow_studies=min_shadow_studies,
                min_reader_verdicts=min_reader_verdicts,
                champion_unservable=champion_unservable,
            )
        except PromotionRefused:
            # Nothing moved: the refusal stands even if its entry cannot be written (that is logged).
            with suppress(DecisionNotAudited):
                _outcome(record, subject, PROMOTE, name, candidate, "refused", request_id, changed=False)
            raise
        except RegistryError:
            _after_failure(record, registry, subject, PROMOTE, name, candidate, request_id)
            raise
        outcome = "unchanged" if gate.previous_champion == gate.version else "success"
        seq = _outcome(record, subject, PROMOTE, name, candidate, outcome, request_id, changed=True)
        previous = None if outcome == "unchanged" else gate.previous_champion
        return Decision(name, candidate, previous, outcome, seq, request_id), gate


def rollback_model(
    *,
    record: Record,
    registry: RegistryClient,
    name: str,
    subject: str,
    serving_problem: ServingProblem | None = None,
) -> Decision:
    """Move ``champion`` back to the previous champion, audited (action ``model:rollback``, resource the
    version that is champion again).

    ``serving_problem`` (``dxassist registry rollback``: the server's own loader) is asked first: an
    earlier champion this server cannot load (e.g. one of an older ONNX contract) is refused.

    Raises:
        model_registry.NotFound: No champion or no earlier one to return to (nothing written).
        VersionUnservable: ``serving_problem`` says the server cannot load the earlier champion; the
            refusal is in the trail (outcome ``refused``).
        DecisionNotAudited: The attempt could not be written (nothing moved), or the outcome after the
            alias moved.
        model_registry.RegistryError: The registry failed during the move (outcome ``failure``, unless
            the alias moved).
        ValueError: A name the registry does not accept.
    """
    with _correlation() as request_id:
        before = registry.resolve(name, CHAMPION)
        target = registry.rollback_target(name)
        _attempt(record, subject, ROLLBACK, name, target)
        _refuse_unservable(
            record, registry, subject, ROLLBACK, name, target, request_id, serving_problem, "roll back to"
        )
        try:
            now = registry.rollback(name)
        except RegistryError:
            _after_failure(record, registry, subject, ROLLBACK, name, target, request_id)
            raise
        seq = _outcome(record, subject, ROLLBACK, name, now, "success", request_id, changed=True)
        return Decision(name, now, before, "success", seq, request_id)


def register_challenger(
    *, record: Record, registry: RegistryClient, name: str, version: str, subject: str
) -> Decision:
    """Point ``challenger`` at a newly registered ``version``, audited (action ``model:register``).

    The version itself is registered before (``log_and_register(alias=None)``): a version without an
    alias is served by nothing, so only the alias move needs the trail first.

    Raises:
        DecisionNotAudited: The attempt could not be written (the alias did not move), or the outcome
            after the alias moved.
        model_registry.RegistryError: The version does not exist (nothing written), or the registry
            failed during the move (outcome ``failure``, unless the alias moved).
    """
    with _correlation() as request_id:
        candidate = registry.get_version(name, version).version
        before = registry.resolve(name, CHALLENGER)
        _attempt(record, subject, REGISTER, name, candidate)
        try:
            registry.set_alias(name, CHALLENGER, candidate)
        except RegistryError:
            _after_failure(record, registry, subject, REGISTER, name, candidate, request_id, CHALLENGER)
            raise
        outcome = "unchanged" if before == candidate else "success"
        seq = _outcome(record, subject, REGISTER, name, candidate, outcome, request_id, changed=True)
        return Decision(name, candidate, None if outcome == "unchanged" else before, outcome, seq, request_id)


class AuditedMoves:
    """The alias moves of ``dxassist train --register`` and ``bootstrap``, each audited as a decision of
    ``subject``.

    ``training.cli`` takes it as its ``AliasMoves`` (by shape: training does not import the services).
    The record is opened by :meth:`prepare` (before training starts, so a trail that cannot be written
    costs no training run) or at the first move; a bootstrap that moves nothing never opens it.

    Attributes:
        subject: Who moves (``cli:<operator>``).
        made: ``(action, decision)`` of every move made through this object, in order (refusals are in
            the trail but not here).
    """

    def __init__(self, open_record: Callable[[], Record], subject: str) -> None:
        self._open_record = open_record
        self._record: Record | None = None
        self.subject = subject
        self.made: list[tuple[str, Decision]] = []

    def prepare(self) -> None:
        """Open the record now (raises whatever ``open_record`` raises when it cannot be opened)."""
        _ = self.record

    def close(self) -> None:
        """Close the record if it was opened."""
        if self._record is not None:
            self._record.close()
            self._record = None

    @property
    def record(self) -> Record:
        """The record the moves are audited in, opened at first use."""
        if self._record is None:
            self._record = self._open_record()
        return self._record

    def challenger(self, client: RegistryClient, name: str, version: str) -> None:
        """Point ``challenger`` at ``version`` (see :func:`register_challenger`)."""
        made = register_challenger(
            record=self.record, registry=client, name=name, version=version, subject=self.subject
        )
        self.made.append((REGISTER, made))

    def promote(
        self, client: RegistryClient, name: str, version: str, *, champion_unservable: bool = False
    ) -> GateDecision:
        """Run the gate and move ``champion`` (see :func:`promote_model`); no live-traffic evidence is
        asked for (a first champion has nothing to be compared with)."""
        made, gate = promote_model(
            record=self.record,
            registry=client,
            name=name,
            version=version,
            subject=self.subject,
            champion_unservable=champion_unservable,
        )
        self.made.append((PROMOTE, made))
        return gate


@contextmanager
def _correlation() -> Iterator[str]:
    """The id both entries of one decision carry (and the log lines made meanwhile)."""
    current = current_request_id()
    if current is not None:
        yield current
        return
    with correlated(new_correlation_id("registry")) as made:
        yield made


def _append(record: Record, subject: str, action: str, name: str, version: str, outcome: str) -> int:
    return record.audit.append(
        subject=subject[:128],
        role=OPERATOR_ROLE,
        facility=None,
        action=action,
        resource_type="Model",
        resource_id=f"{name}@{version}"[:128],
        patient_id=None,
        outcome=outcome,
        client=None,
    )


def _refuse_unservable(
    record: Record,
    registry: RegistryClient,
    subject: str,
    action: str,
    name: str,
    version: str,
    request_id: str,
    serving_problem: ServingProblem | None,
    verb: str,
) -> None:
    """Refuse (outcome ``refused``) a target ``serving_problem`` says this server cannot load.

    Asked after the attempt is written: fetching the file can fail, and the trail then holds the attempt
    with its ``failure``.

    Raises:
        VersionUnservable: The server cannot load ``version``.
        model_registry.RegistryError: The version's file could not be fetched (outcome ``failure``).
    """
    if serving_problem is None:
        return
    try:
        problem = serving_problem(name, version)
    except RegistryError:
        with suppress(DecisionNotAudited):  # the registry's own error is the one to report
            _outcome(record, subject, action, name, version, "failure", request_id, changed=False)
        raise
    if problem is None:
        return
    with suppress(DecisionNotAudited):  # nothing moved: the refusal stands (a failed write is logged)
        _outcome(record, subject, action, name, version, "refused", request_id, changed=False)
    try:
        current = registry.resolve(name, CHAMPION)
    except (RegistryError, ValueError):
        current = None
    stays = f"champion stays version {current}" if current else "champion is not moved"
    raise VersionUnservable(
        f"Version {version} of {name} cannot be served by this version of dxassist, so champion cannot "
        f"{verb} it: {problem.rstrip('.')}. Nothing was changed ({stays}). Register a version this server "
        f"loads (`dxassist train {'triage' if name == TRIAGE_MODEL else 'imaging'} --register`) and "
        f"promote that one; `dxassist registry show {name}` lists the versions.",
        name=name,
        version=version,
        problem=problem,
    )


def _attempt(record: Record, subject: str, action: str, name: str, version: str) -> None:
    try:
        _append(record, subject, action, name, version, "attempt")
    except RecordError as e:
        raise DecisionNotAudited(
            f"The audit trail cannot be written ({type(e).__name__}), so nothing was changed: a change of "
            "the model in service is written to the audit trail before it is made.",
            changed=False,
        ) from e


def _outcome(
    record: Record,
    subject: str,
    action: str,
    name: str,
    version: str,
    outcome: str,
    request_id: str,
    *,
    changed: bool,
) -> int:
    """Write the outcome entry and return its ``seq``.

    Raises:
        DecisionNotAudited: The entry could not be written (``changed``: the registry moved all the same).
    """
    try:
        return _append(record, subject, action, name, version, outcome)
    except RecordError as e:
        logger.error(
            "a registry decision's outcome could not be written to the audit trail",
            extra={"code": "audit_write_failed", "model": name, "model_version": version},
        )
        if not changed:
            raise DecisionNotAudited(
                f"The outcome '{outcome}' of {action} could not be written to the audit trail "
                f"({type(e).__name__}); nothing was changed (the trail holds the attempt, request id "
                f"{request_id}).",
                changed=False,
            ) from e
        raise DecisionNotAudited(
            f"The {_ALIAS_OF[action]} alias of {name} DID move to version {version}, but the audit trail "
            f"could not record the outcome ({type(e).__name__}). The trail holds the attempt ({action}, "
            f"request id {request_id}); record the outcome '{outcome}' of {subject} by hand "
            "(docs/security.md, Registry decisions).",
            changed=True,
        ) from e


def _after_failure(
    record: Record,
    registry: RegistryClient,
    subject: str,
    action: str,
    name: str,
    version: str,
    request_id: str,
    alias: str = CHAMPION,
) -> None:
    """The registry failed mid-decision: audit where the alias is (``success`` if it moved after all)."""
    try:
        moved = registry.resolve(name, alias) == version
    except (RegistryError, ValueError):
        moved = False
    if moved:
        _outcome(record, subject, action, name, version, "success", request_id, changed=True)
        return
    with suppress(DecisionNotAudited):  # the registry's own error is the one to report
        _outcome(record, subject, action, name, version, "failure", request_id, changed=False)
