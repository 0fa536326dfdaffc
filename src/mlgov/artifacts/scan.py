"""Scanning model artifacts at registration, without ever loading them.

The registry calls :func:`scan_artifact` (or :func:`scan_or_raise`) in the API process on every
uploaded artifact, so nothing here imports, unpickles or constructs a model object: pickles are
disassembled opcode by opcode (``picklescan`` plus our own parse check), skops files are audited
from their ``schema.json`` (``skops.io.get_untrusted_types``), ONNX files are parsed as protobuf
without external data, XGBoost and LightGBM files are recognised by their native headers, and
MLflow models are read as archives (see :mod:`mlgov.artifacts.archive`) whose ``MLmodel`` is
parsed with ``yaml.safe_load`` and whose data files get the rule of their flavour.

What each format must satisfy:

* ``pickle``: no dangerous global (``os.system``, ``builtins.eval``, ``subprocess.*``, ...), a
  stream that parses to the end, and ``ScanPolicy.allow_pickle`` (an admin opt-in).
* ``skops``: a valid skops zip whose types are all trusted by skops' defaults or by
  ``ScanPolicy.trusted_types``; it never contains pickles.
* ``onnx``: a parseable model that uses only the standard operator domains and keeps no
  external data outside its own directory.
* ``xgboost`` / ``lightgbm``: the native JSON/UBJSON or text model format, never a pickle.
* ``mlflow``: a safe archive with an ``MLmodel`` naming a flavour mlgov can load (sklearn,
  onnx, xgboost, lightgbm), no custom pyfunc code, and data files that pass their own rule.
* ``other``: stored but never loaded; it still fails if it is a pickle with dangerous globals.

The result is a :class:`ScanReport` that the registry keeps as evidence
(:meth:`ScanReport.results`, :meth:`ScanReport.checks`) and shows to the uploader
(:meth:`ScanReport.message`).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import pickletools
import posixpath
import re
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from mlgov.artifacts.archive import (
    DEFAULT_MAX_MEMBERS,
    DEFAULT_MAX_UNPACKED_BYTES,
    Archive,
    UnsafeArchive,
    normalise_member_name,
    open_archive,
)

if TYPE_CHECKING:
    import onnx

__all__ = [
    "FORMATS",
    "ArtifactRejected",
    "Finding",
    "MlflowFlavour",
    "ScanPolicy",
    "ScanReport",
    "mlflow_flavours",
    "mlflow_root",
    "mlflow_signature_names",
    "scan_artifact",
    "scan_or_raise",
]

FORMATS = ("skops", "onnx", "xgboost", "lightgbm", "mlflow", "pickle", "other")
SEVERITIES = ("dangerous", "untrusted", "refused", "warning")
STANDARD_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})

PICKLE_REFUSED = "plain pickle is refused unless an admin policy allows it (artifacts.allow_pickle)"
NO_LOADER = "no scanner for this format; it can be stored but never loaded"
CUSTOM_PYFUNC = "custom pyfunc code would execute on load"

_PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".cloudpickle"})
_MLMODEL_LIMIT = 1024 * 1024
_FULL_JSON_PARSE_LIMIT = 64 * 1024 * 1024
_SCHEMA_LIMIT = 256 * 1024 * 1024
_DETAILS_LIMIT = 512

_XGBOOST_CLASSES = frozenset(
    {
        "xgboost.core.Booster",
        "xgboost.sklearn.XGBClassifier",
        "xgboost.sklearn.XGBRegressor",
        "xgboost.sklearn.XGBRanker",
        "xgboost.sklearn.XGBRFClassifier",
        "xgboost.sklearn.XGBRFRegressor",
    }
)
_LIGHTGBM_SKLEARN_CLASSES = frozenset(
    {
        "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.sklearn.LGBMRegressor",
        "lightgbm.sklearn.LGBMRanker",
    }
)


@dataclass(frozen=True)
class ScanPolicy:
    """What an admin allows beyond the safe defaults."""

    allow_pickle: bool = False
    # skops types an admin reviewed, added to those skops trusts by default.
    trusted_types: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    severity: str  # "dangerous" | "untrusted" | "refused" | "warning"
    member: str  # archive member, or "" for the scanned file itself
    detail: str

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown finding severity {self.severity!r}")

    @property
    def blocking(self) -> bool:
        return self.severity != "warning"


@dataclass(frozen=True)
class ScanReport:
    format: str
    passed: bool
    findings: tuple[Finding, ...]
    tools: dict[str, str]
    members: tuple[str, ...]
    sha256: str
    name: str = ""  # the scanned file's name, used where a finding's member is ""
    scanners: dict[str, str] = field(default_factory=dict)  # member -> what examined it

    def _label(self, member: str) -> str:
        if member:
            return member
        if self.format == "mlflow":
            return "the archive"
        return self.name or "the artifact"

    def _first(self, severity: str) -> tuple[Finding | None, int]:
        matching = [f for f in self.findings if f.severity == severity]
        return (matching[0] if matching else None), len(matching)

    @property
    def conclusive(self) -> bool:
        """Whether a scanner for the format examined the content (not so for ``other``: the
        upload is accepted, but its scan is no evidence that it is safe to load)."""
        return not any(f.detail == NO_LOADER for f in self.findings)

    def message(self) -> str:
        """One sentence for the uploader; a failure names the first dangerous import."""
        dangerous, count = self._first("dangerous")
        if dangerous is not None:
            more = f" (and {count - 1} more dangerous import(s))" if count > 1 else ""
            return (
                "the artifact would execute code when loaded: "
                f"{self._label(dangerous.member)} {dangerous.detail}{more}"
            )
        untrusted, count = self._first("untrusted")
        if untrusted is not None:
            more = f" (and {count - 1} more)" if count > 1 else ""
            return (
                f"the artifact was rejected: {self._label(untrusted.member)}: "
                f"{untrusted.detail}{more}; an admin can trust a reviewed type in "
                "artifacts.trusted_types"
            )
        refused, _ = self._first("refused")
        if refused is not None:
            return f"the artifact was refused: {self._label(refused.member)}: {refused.detail}"
        files = f"{len(self.members)} file{'s' if len(self.members) != 1 else ''} examined"
        text = f"the {self.format} artifact passed the scan ({files})"
        warning, _ = self._first("warning")
        if warning is not None:
            text += f"; warning: {warning.detail}"
        return text

    def results(self) -> dict[str, Any]:
        """A JSON-able summary for an evidence record's ``results``."""
        return {
            "format": self.format,
            "passed": self.passed,
            "message": self.message(),
            "sha256": self.sha256,
            "members": list(self.members),
            "tools": dict(self.tools),
            "findings": [
                {"severity": f.severity, "member": f.member, "detail": f.detail}
                for f in self.findings
            ],
        }

    def checks(self) -> list[dict[str, Any]]:
        """One evidence check per examined member (and per scanner that examined it)."""
        out: list[dict[str, Any]] = []
        for member, scanner in self.scanners.items():
            mine = [f for f in self.findings if f.member == member]
            blocking = [f for f in mine if f.blocking]
            value = blocking[0].severity if blocking else ("warning" if mine else "clean")
            details = "; ".join(f"{f.severity}: {f.detail}" for f in mine) or "no findings"
            details = f"{scanner}: {details}"
            if len(details) > _DETAILS_LIMIT:
                details = details[: _DETAILS_LIMIT - 1] + "…"
            out.append(
                {
                    "name": f"artifact scan: {self._label(member)}",
                    "passed": not blocking,
                    "value": value,
                    "threshold": None,
                    "details": details,
                }
            )
        return out


class ArtifactRejected(Exception):
    """The scan failed; ``report`` says why and ``str(error)`` is ``report.message()``."""

    def __init__(self, report: ScanReport) -> None:
        super().__init__(report.message())
        self.report = report


# -- the scan -----------------------------------------------------------------------------------


def scan_artifact(
    path: Path,
    format: str,
    policy: ScanPolicy = ScanPolicy(),
    *,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> ScanReport:
    """Scan the artifact at ``path`` as ``format`` (an ``ArtifactFormat`` value) without loading it.

    ``max_members`` and ``max_unpacked_bytes`` bound what an archive (MLflow, skops) may unpack to.
    """
    fmt = str(format)
    if fmt not in FORMATS:
        raise ValueError(f"unknown artifact format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = Path(path)
    digest = _sha256(path)
    with tempfile.TemporaryDirectory(prefix="mlgov-scan-") as tmp:
        scan = _Scan(policy, Path(tmp), max_members, max_unpacked_bytes)
        try:
            _HANDLERS[fmt](scan, path)
        except UnsafeArchive as exc:  # a member turned out corrupt while it was read
            scan.add("refused", "", str(exc))
    return ScanReport(
        format=fmt,
        passed=not any(f.blocking for f in scan.findings),
        findings=tuple(scan.findings),
        tools=dict(scan.tools),
        members=tuple(scan.members),
        sha256=digest,
        name=path.name,
        scanners={member: ", ".join(names) for member, names in scan.scanners.items()},
    )


def scan_or_raise(
    path: Path,
    format: str,
    policy: ScanPolicy = ScanPolicy(),
    *,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> ScanReport:
    """:func:`scan_artifact`, raising :class:`ArtifactRejected` when the scan fails."""
    report = scan_artifact(
        path,
        format,
        policy,
        max_members=max_members,
        max_unpacked_bytes=max_unpacked_bytes,
    )
    if not report.passed:
        raise ArtifactRejected(report)
    return report


class _Scan:
    """Findings, tools and members collected while one artifact is scanned."""

    def __init__(self, policy: ScanPolicy, tmp: Path, max_members: int, max_bytes: int) -> None:
        self.policy = policy
        self.tmp = tmp
        self.max_members = max_members
        self.max_bytes = max_bytes
        self.findings: list[Finding] = []
        self.tools: dict[str, str] = {}
        self.members: list[str] = []
        self.scanners: dict[str, list[str]] = {}

    def add(self, severity: str, member: str, detail: str) -> None:
        self.findings.append(Finding(severity, member, detail))
        self.scanners.setdefault(member, [])

    def examined(self, member: str, tool: str, version: str | None = None) -> None:
        self.tools[tool] = version if version is not None else _version(tool)
        names = self.scanners.setdefault(member, [])
        if tool not in names:
            names.append(tool)

    def archive(self, path: Path) -> Archive:
        return open_archive(path, max_members=self.max_members, max_unpacked_bytes=self.max_bytes)

    # -- rules shared by several formats --------------------------------------------------------

    def pickle(self, path: Path, member: str, *, by_policy: bool, must_parse: bool) -> None:
        """Picklescan ``path``; ``by_policy`` applies allow_pickle, ``must_parse`` a parse check."""
        from picklescan.scanner import (  # type: ignore[import-untyped]
            SafetyLevel,
            scan_pickle_bytes,
        )

        self.examined(member, "picklescan")
        parse_error = _pickle_parse_error(path) if must_parse else None
        globals_: list[Any] = []
        try:
            with path.open("rb") as stream:
                globals_ = scan_pickle_bytes(stream, member or path.name).globals
        except Exception as exc:  # noqa: BLE001 - picklescan raises bare errors on odd streams
            if parse_error is None:
                self.add("refused", member, f"picklescan could not analyse the pickle ({exc})")
        dangerous = sorted(
            {f"{g.module}.{g.name}" for g in globals_ if g.safety == SafetyLevel.Dangerous}
        )
        for name in dangerous:
            self.add("dangerous", member, f"imports {name}")
        if parse_error is not None:
            if any(g.module.startswith("joblib.") for g in globals_):
                parse_error += (
                    "; joblib interleaves raw array buffers that cannot be scanned, "
                    "save the model with skops instead"
                )
            self.add("refused", member, f"not a well-formed pickle stream ({parse_error})")
        if by_policy and not self.policy.allow_pickle:
            self.add("refused", member, PICKLE_REFUSED)

    def skops(self, path: Path, member: str) -> None:
        import skops.io  # type: ignore[import-untyped]

        self.examined(member, "skops")
        try:
            archive = self.archive(path)
        except UnsafeArchive as exc:
            self.add("refused", member, f"not a valid skops file: {exc}")
            return
        with archive:
            if "schema.json" not in archive.files:
                self.add("refused", member, "not a valid skops file: schema.json is missing")
                return
            schema = next(m for m in archive.members if m.name == "schema.json")
            if schema.size > _SCHEMA_LIMIT:
                self.add("refused", member, "not a valid skops file: schema.json is too large")
                return
            for name in archive.files:
                inner = f"{member}:{name}" if member else name
                self.members.append(inner)
                if _looks_like_pickle(name, archive.head(name)):
                    with archive.spool(name, self.tmp) as spooled:
                        self.pickle(spooled, inner, by_policy=False, must_parse=False)
                    self.add("refused", inner, "a skops file never contains pickles")
        try:
            untrusted = skops.io.get_untrusted_types(file=path)
        except Exception as exc:  # noqa: BLE001 - any parse failure means "not a skops file"
            self.add("refused", member, f"not a valid skops file ({type(exc).__name__}: {exc})")
            return
        trusted = set(self.policy.trusted_types)
        for type_name in untrusted:
            if type_name not in trusted:
                self.add("untrusted", member, f"skops type not trusted: {type_name}")

    def onnx(self, path: Path, member: str, archive_files: frozenset[str] | None) -> None:
        """Parse the model; ``archive_files`` lists its siblings when it came from an archive."""
        import onnx

        self.examined(member, "onnx")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # noqa: BLE001 - protobuf and onnx raise many types
            self.add("refused", member, f"not a valid ONNX model ({type(exc).__name__}: {exc})")
            return
        if model.ir_version <= 0 or not (len(model.graph.node) or len(model.graph.output)):
            self.add("refused", member, "not a valid ONNX model (no graph)")
            return
        # Model-local functions are made of other nodes (checked too), so their own domain is
        # fine where it names one of them, and only there.
        local_functions = {(f.domain, f.name) for f in model.functions}
        domains = {op.domain for op in model.opset_import} - {d for d, _ in local_functions}
        for graph in _onnx_graphs(model):
            for node in graph.node:
                if (node.domain, node.op_type) not in local_functions:
                    domains.add(node.domain)
        for domain in sorted(domains - STANDARD_ONNX_DOMAINS):
            self.add("refused", member, f"custom operator domain {domain!r} is not allowed")
        base = posixpath.dirname(member)
        for tensor in _onnx_tensors(model):
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            location = next((e.value for e in tensor.external_data if e.key == "location"), "")
            try:
                relative = normalise_member_name(location)
            except UnsafeArchive:
                self.add(
                    "refused",
                    member,
                    f"external data location {location!r} escapes the model directory",
                )
                continue
            if archive_files is None:
                self.add(
                    "refused",
                    member,
                    f"tensor {tensor.name!r} keeps its data in {location!r}, which a single-file "
                    "ONNX artifact cannot include (upload an MLflow archive instead)",
                )
            elif posixpath.join(base, relative) not in archive_files:
                self.add(
                    "refused",
                    member,
                    f"external data file {location!r} is not in the archive",
                )

    def xgboost(self, path: Path, member: str) -> None:
        self.examined(member, "mlgov", _version("mlgov"))
        head = _head(path, 64)
        if _looks_like_pickle("", head):
            self.pickle(path, member, by_policy=False, must_parse=False)
            self.add("refused", member, "pickle, not the xgboost native format")
            return
        if _is_xgboost_json(path, head) or _ubjson_first_key(head) == "learner":
            return
        self.add(
            "refused",
            member,
            "not an xgboost model in the native JSON or UBJSON format (use save_model to "
            ".json or .ubj)",
        )

    def lightgbm(self, path: Path, member: str) -> None:
        self.examined(member, "mlgov", _version("mlgov"))
        head = _head(path, 4096)
        if _looks_like_pickle("", head):
            self.pickle(path, member, by_policy=False, must_parse=False)
            self.add("refused", member, "pickle, not the LightGBM native format")
            return
        if re.match(rb"tree\r?\n", head) and re.search(rb"^version=v\d", head, re.MULTILINE):
            return
        self.add(
            "refused",
            member,
            "not a LightGBM model in the native text format (use Booster.save_model)",
        )


# -- formats ------------------------------------------------------------------------------------


def _scan_pickle_file(scan: _Scan, path: Path) -> None:
    scan.members.append(path.name)
    scan.pickle(path, "", by_policy=True, must_parse=True)


def _scan_skops_file(scan: _Scan, path: Path) -> None:
    scan.skops(path, "")
    if not scan.members:
        scan.members.append(path.name)


def _scan_onnx_file(scan: _Scan, path: Path) -> None:
    scan.members.append(path.name)
    scan.onnx(path, "", None)


def _scan_xgboost_file(scan: _Scan, path: Path) -> None:
    scan.members.append(path.name)
    scan.xgboost(path, "")


def _scan_lightgbm_file(scan: _Scan, path: Path) -> None:
    scan.members.append(path.name)
    scan.lightgbm(path, "")


def _scan_other_file(scan: _Scan, path: Path) -> None:
    scan.members.append(path.name)
    scan.examined("", "mlgov", _version("mlgov"))
    head = _head(path, 16)
    if head.startswith(b"PK\x03\x04"):
        # Never extracted or loaded, so an odd or corrupt zip is only worth the warning below.
        with contextlib.suppress(UnsafeArchive), scan.archive(path) as archive:
            for name in archive.files:
                if _looks_like_pickle(name, archive.head(name)):
                    scan.members.append(name)
                    with archive.spool(name, scan.tmp) as spooled:
                        scan.pickle(spooled, name, by_policy=False, must_parse=False)
    elif _looks_like_pickle(path.name, head) or _starts_with_pickle(path):
        scan.pickle(path, "", by_policy=False, must_parse=False)
    scan.add("warning", "", NO_LOADER)


def _scan_mlflow_file(scan: _Scan, path: Path) -> None:
    scan.examined("", "mlgov", _version("mlgov"))
    try:
        archive = scan.archive(path)
    except UnsafeArchive as exc:
        scan.members.append(path.name)
        scan.add("refused", "", str(exc))
        return
    with archive:
        files = frozenset(archive.files)
        scan.members.extend(archive.files)
        root = mlflow_root(archive.files)
        if root is None:
            scan.add(
                "refused",
                "",
                "no MLmodel file at the archive root or inside a single top-level folder",
            )
            return
        mlmodel_name = posixpath.join(root, "MLmodel")
        scan.examined(mlmodel_name, "mlgov", _version("mlgov"))
        try:
            mlmodel = yaml.safe_load(archive.read(mlmodel_name, _MLMODEL_LIMIT))
        except (yaml.YAMLError, UnsafeArchive) as exc:
            scan.add("refused", mlmodel_name, f"MLmodel is not valid YAML ({exc})")
            return
        try:
            flavours, problems = mlflow_flavours(mlmodel)
        except ValueError as exc:
            scan.add("refused", mlmodel_name, str(exc))
            return
        for severity, detail in problems:
            scan.add(severity, mlmodel_name, detail)
        if not flavours:
            found = ", ".join(sorted(mlmodel["flavors"])) or "none"
            scan.add(
                "refused",
                mlmodel_name,
                "the MLflow model has no flavour mlgov can load (sklearn, onnx, xgboost, "
                f"lightgbm); it has: {found}",
            )
        scanned: set[str] = {mlmodel_name}
        for flavour in flavours:
            name = posixpath.join(root, flavour.data)
            if name in scanned:
                continue
            scanned.add(name)
            if name not in files:
                scan.add(
                    "refused",
                    mlmodel_name,
                    f"the {flavour.name} flavour names {flavour.data!r}, which is not in the "
                    "archive",
                )
                continue
            with archive.spool(name, scan.tmp) as spooled:
                if flavour.rule == "skops":
                    scan.skops(spooled, name)
                elif flavour.rule == "pickle":
                    scan.pickle(spooled, name, by_policy=True, must_parse=True)
                elif flavour.rule == "onnx":
                    scan.onnx(spooled, name, files)
                elif flavour.rule == "xgboost":
                    scan.xgboost(spooled, name)
                else:
                    scan.lightgbm(spooled, name)
        for name in archive.files:
            if name not in scanned and _looks_like_pickle(name, archive.head(name)):
                with archive.spool(name, scan.tmp) as spooled:
                    scan.pickle(spooled, name, by_policy=False, must_parse=False)


_HANDLERS = {
    "pickle": _scan_pickle_file,
    "skops": _scan_skops_file,
    "onnx": _scan_onnx_file,
    "xgboost": _scan_xgboost_file,
    "lightgbm": _scan_lightgbm_file,
    "mlflow": _scan_mlflow_file,
    "other": _scan_other_file,
}


# -- MLflow model directories (shared with the loaders) -----------------------------------------


@dataclass(frozen=True)
class MlflowFlavour:
    """A flavour of an MLflow model that mlgov can load, and the rule for its data file."""

    name: str  # "sklearn" | "onnx" | "xgboost" | "lightgbm"
    rule: str  # "skops" | "pickle" | "onnx" | "xgboost" | "lightgbm"
    data: str  # normalised path relative to the model directory


def mlflow_root(files: Iterable[str]) -> str | None:
    """The model directory inside an archive: "" (MLmodel at the root), "folder", or None."""
    names = list(files)
    if "MLmodel" in names:
        return ""
    candidates = [
        n[: -len("/MLmodel")] for n in names if n.count("/") == 1 and n.endswith("/MLmodel")
    ]
    if len(candidates) != 1:
        return None
    root = candidates[0]
    if any(not n.startswith(root + "/") for n in names):
        return None
    return root


def mlflow_flavours(mlmodel: Any) -> tuple[list[MlflowFlavour], list[tuple[str, str]]]:
    """Loadable flavours in preference order, and (severity, detail) problems with the MLmodel.

    Raises ValueError when ``mlmodel`` is not an MLmodel document at all.
    """
    if not isinstance(mlmodel, Mapping) or not isinstance(mlmodel.get("flavors"), Mapping):
        raise ValueError("MLmodel has no 'flavors' mapping")
    flavors: Mapping[str, Any] = mlmodel["flavors"]
    problems: list[tuple[str, str]] = []
    found: list[MlflowFlavour] = []

    pyfunc = flavors.get("python_function")
    if pyfunc is not None:
        pyconf: Mapping[str, Any] = pyfunc if isinstance(pyfunc, Mapping) else {}
        loader = pyconf.get("loader_module")
        if pyconf.get("python_model") or pyconf.get("cloudpickle_version"):
            problems.append(
                ("refused", f"{CUSTOM_PYFUNC}: python_model {pyconf.get('python_model')!r}")
            )
        if pyconf.get("code"):
            problems.append(("refused", f"{CUSTOM_PYFUNC}: code directory {pyconf['code']!r}"))
        if loader is not None and not (isinstance(loader, str) and loader.startswith("mlflow.")):
            problems.append(("refused", f"{CUSTOM_PYFUNC}: loader_module {loader!r}"))

    def data_path(
        flavour: str, conf: Mapping[str, Any], key: str, default: str | None
    ) -> str | None:
        value = conf.get(key, default)
        if not isinstance(value, str) or not value:
            problems.append(("refused", f"the {flavour} flavour does not name its data file"))
            return None
        try:
            return normalise_member_name(value)
        except UnsafeArchive:
            problems.append(
                (
                    "refused",
                    f"the {flavour} flavour data path {value!r} escapes the model directory",
                )
            )
            return None

    def pickled(flavour: str, conf: Mapping[str, Any], default_format: str) -> str | None:
        serialization = conf.get("serialization_format", default_format)
        if serialization == "skops":
            return "skops"
        if serialization in ("pickle", "cloudpickle"):
            return "pickle"
        problems.append(
            ("refused", f"the {flavour} flavour serialization_format {serialization!r} is unknown")
        )
        return None

    for name in ("sklearn", "onnx", "xgboost", "lightgbm"):
        raw = flavors.get(name)
        if raw is None:
            continue
        conf: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        if conf.get("code"):
            problems.append(
                (
                    "warning",
                    f"the {name} flavour's code directory is ignored: mlgov never imports it",
                )
            )
        rule: str | None
        if name == "sklearn":
            rule = pickled(name, conf, "pickle")
            data = data_path(name, conf, "pickled_model", None)
        elif name == "onnx":
            rule, data = "onnx", data_path(name, conf, "data", "model.onnx")
        elif name == "xgboost":
            model_class = conf.get("model_class", "xgboost.core.Booster")
            rule = "xgboost"
            if model_class not in _XGBOOST_CLASSES:
                problems.append(
                    ("refused", f"the xgboost flavour model_class {model_class!r} is not allowed")
                )
                rule = None
            data = data_path(name, conf, "data", None)
        else:
            model_class = conf.get("model_class", "lightgbm.basic.Booster")
            if model_class == "lightgbm.basic.Booster":
                rule = "lightgbm"
            elif model_class in _LIGHTGBM_SKLEARN_CLASSES:
                rule = pickled(name, conf, "cloudpickle")
            else:
                problems.append(
                    ("refused", f"the lightgbm flavour model_class {model_class!r} is not allowed")
                )
                rule = None
            data = data_path(name, conf, "data", None)
        if rule is not None and data is not None:
            found.append(MlflowFlavour(name, rule, data))
    return found, problems


def mlflow_signature_names(mlmodel: Any) -> list[str] | None:
    """Input column names from an MLmodel's column-based signature, if it has one."""
    if not isinstance(mlmodel, Mapping):
        return None
    signature = mlmodel.get("signature")
    if not isinstance(signature, Mapping):
        return None
    inputs = signature.get("inputs")
    try:
        specs = json.loads(inputs) if isinstance(inputs, str) else inputs
    except json.JSONDecodeError:
        return None
    if not isinstance(specs, list) or not specs:
        return None
    names = [spec.get("name") for spec in specs if isinstance(spec, Mapping)]
    if len(names) != len(specs) or not all(isinstance(n, str) and n for n in names):
        return None
    return [str(n) for n in names]


# -- helpers ------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _head(path: Path, n: int) -> bytes:
    with path.open("rb") as stream:
        return stream.read(n)


def _looks_like_pickle(name: str, head: bytes) -> bool:
    """A protocol 2+ pickle header, or a pickle-ish file name."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return posixpath.splitext(name)[1].lower() in _PICKLE_SUFFIXES


def _pickle_parse_error(path: Path) -> str | None:
    """None when ``path`` is a sequence of complete pickles, else where and why parsing failed."""
    with path.open("rb") as stream:
        return _pickle_stream_error(stream)


def _pickle_stream_error(stream: IO[bytes]) -> str | None:
    pickles = 0
    while True:
        start = stream.tell()
        if not stream.read(1):
            return None if pickles else "the file is empty"
        stream.seek(start)
        try:
            for _opcode, _arg, _pos in pickletools.genops(stream):
                pass
        except Exception as exc:  # noqa: BLE001 - genops raises ValueError, EOFError, ...
            return f"parsing stopped at byte {stream.tell()}: {exc}"
        pickles += 1


def _starts_with_pickle(path: Path) -> bool:
    """True when the file opens with one complete pickle (protocol 0 and 1 have no header)."""
    with path.open("rb") as stream:
        try:
            for _opcode, _arg, _pos in pickletools.genops(stream):
                pass
        except Exception:  # noqa: BLE001 - not a pickle
            return False
    return True


def _is_xgboost_json(path: Path, head: bytes) -> bool:
    if not re.match(rb"\s*\{\s*\"", head):
        return False
    if path.stat().st_size > _FULL_JSON_PARSE_LIMIT:
        # Too big to parse in the API process: xgboost writes "learner" as the first key.
        return re.match(rb'\s*\{\s*"learner"\s*:', head) is not None
    try:
        document = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(document, dict) and isinstance(document.get("learner"), dict)


_UBJ_LENGTHS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q"}


def _ubjson_first_key(head: bytes) -> str | None:
    """The first key of a UBJSON object (xgboost's ``.ubj`` starts ``{L<int64>learner``)."""
    if not head.startswith(b"{") or len(head) < 3:
        return None
    fmt = _UBJ_LENGTHS.get(head[1:2])
    if fmt is None:
        return None
    size = struct.calcsize(fmt)
    if len(head) < 2 + size:
        return None
    (length,) = struct.unpack(fmt, head[2 : 2 + size])
    if not 0 < length <= len(head) - 2 - size:
        return None
    try:
        return head[2 + size : 2 + size + length].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _onnx_graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto]:
    """The main graph, every subgraph (If/Loop/Scan bodies) and the graphs in local functions."""
    import onnx

    def walk(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
        yield graph
        for node in graph.node:
            yield from walk_attributes(node)

    def walk_attributes(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from walk(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from walk(sub)

    yield from walk(model.graph)
    for function in model.functions:
        # A function is not a graph, but its nodes are checked the same way.
        shell = onnx.GraphProto()
        shell.node.extend(function.node)
        yield from walk(shell)


def _onnx_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    import onnx

    for graph in _onnx_graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors
                elif attr.type == onnx.AttributeProto.SPARSE_TENSOR:
                    yield attr.sparse_tensor.values
                    yield attr.sparse_tensor.indices
