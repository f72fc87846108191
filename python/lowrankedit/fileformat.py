"""The one file format of everything lowrankedit saves: tensors in safetensors, metadata in JSON, a checksum.

A file is a plain safetensors file (readable by any safetensors reader) whose header metadata holds:

``format``           ``"lowrankedit"``
``format_version``   ``"1"``
``library_version``  the lowrankedit version that wrote it
``kind``             one of :data:`KINDS`: what the file holds
``meta``             the metadata as JSON (method, parameters, latent space and shape, generator fingerprint,
                     region, ...); tensors, tuples and non-finite floats inside it are kept exactly (see below)
``checksum``         ``"sha256:<hex>"`` of the whole file with these 64 hex digits written as zeros

Loading reads the file once, checks the header, the checksum (any flipped or missing byte is detected), the kind,
then decodes the tensors with safetensors and the metadata with ``json``: no code in the file is ever run. Every
problem raises :class:`FileFormatError` (a ``ValueError``) naming the file and the problem. Files of the old format
(``torch.save``, a pickle) are refused; :func:`convert_legacy` converts one you trust.

Saving writes the bytes to a new temporary file in the target folder (created exclusively under a unique name, not
following links), flushes and fsyncs it, renames it over the target with ``os.replace`` and fsyncs the folder:
readers see the old file or the new one, never a mix, and a failed save leaves the old file as it was.

Inside ``meta``, a tensor becomes ``{"__lowrankedit__": "tensor", "name": "m/<i>"}`` (its data is stored beside
the others), a tuple ``{"__lowrankedit__": "tuple", "items": [...]}`` and NaN / +-Inf
``{"__lowrankedit__": "float", "value": "nan"}``, so the JSON stays strict and a round trip gives back equal values
of equal types. Metadata keys must be strings; other objects (functions, arrays, modules) are refused on save.
"""
import hashlib
import json
import math
import numbers
import os
import struct
import tempfile

import torch

FORMAT = "lowrankedit"
FORMAT_VERSION = 1
#: What a file can hold; ``load`` refuses a file of another kind than the one asked for.
KINDS = ("directions", "gram", "parts_appearances", "evaluation")

_MARK = "__lowrankedit__"
_ZERO_DIGEST = "0" * 64
_CHECKSUM_PREFIX = "sha256:"
_USER, _META = "t/", "m/"  # tensor-name namespaces: the caller's tensors and those found inside meta


class FileFormatError(ValueError):
    """A file that is not a valid lowrankedit file of the kind asked for: empty, truncated, corrupt, foreign,
    of another kind, or of the old pickle format. ``path`` and ``problem`` say which file and what is wrong."""

    def __init__(self, path, problem):
        self.path = os.fspath(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# ----------------------------------------------------------------------------------------------------------------
# Public API


def save(path, kind, tensors, meta):
    """Write ``tensors`` and ``meta`` to ``path`` as a ``kind`` file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Target file; its folder is created when missing. An existing file is replaced in one step.
    kind : str
        One of :data:`KINDS`.
    tensors : dict[str, torch.Tensor]
        Named tensors (any device; stored on the CPU, contiguous, detached).
    meta : dict
        JSON-like metadata: str keys; values None, bool, int, float (NaN / Inf kept), str, list, tuple, dict or
        ``torch.Tensor``.

    Raises
    ------
    TypeError, ValueError
        For a bad ``kind``, tensor or metadata entry (naming it); nothing is written then.
    OSError
        When the write fails; the previous file at ``path`` is left intact.
    """
    data = encode(kind, tensors, meta)
    atomic_write(path, data)


def load(path, kind):
    """Read a ``kind`` file written by :func:`save`: ``(tensors, meta)``, tensors on the CPU.

    Raises
    ------
    FileFormatError
        The file is empty, truncated, corrupt (checksum), not a lowrankedit file, of another kind, of a newer
        format version, or an old pickle file (refused: see :func:`convert_legacy`).
    FileNotFoundError
        No file at ``path``.
    """
    _check_kind(kind, "fileformat.load")
    with open(os.fspath(path), "rb") as f:  # one read: a concurrent os.replace gives the old or the new file
        data = f.read()
    return decode(data, kind, path)


def encode(kind, tensors, meta):
    """The bytes :func:`save` writes (tensors and metadata checked here, before anything touches the disk)."""
    import safetensors.torch

    from . import __version__

    _check_kind(kind, "fileformat.save")
    if not isinstance(tensors, dict):
        raise TypeError(f"fileformat.save: expected tensors to be a dict of name -> torch.Tensor, "
                        f"got {type(tensors).__name__}")
    if not isinstance(meta, dict):
        raise TypeError(f"fileformat.save: expected meta to be a dict, got {type(meta).__name__}")
    stored = {}
    for name, t in tensors.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"fileformat.save: expected tensor names to be non-empty str, got {name!r}")
        stored[_USER + name] = _plain_tensor(t, f"tensors[{name!r}]")
    meta_json = json.dumps(_encode_meta(meta, stored, "meta"), ensure_ascii=True, allow_nan=False,
                           separators=(",", ":"), sort_keys=True)
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "library_version": str(__version__),
              "kind": kind, "meta": meta_json, "checksum": _CHECKSUM_PREFIX + _ZERO_DIGEST}
    data = bytearray(safetensors.torch.save(stored, metadata=header))
    at = _checksum_position(data, _ZERO_DIGEST)
    if at is None:  # cannot happen with safetensors' JSON header; refuse rather than write an unverifiable file
        raise RuntimeError("fileformat.save: could not place the checksum in the safetensors header")
    data[at:at + 64] = hashlib.sha256(data).hexdigest().encode()
    return bytes(data)


def decode(data, kind, path="<bytes>"):
    """``(tensors, meta)`` from the bytes of a file; ``path`` names it in errors. See :func:`load`."""
    import safetensors.torch

    _check_kind(kind, "fileformat.load")
    data = bytes(data)
    md = _header_metadata(data, path)
    try:
        version = int(md.get("format_version", ""))
    except ValueError:
        raise FileFormatError(path, f"bad format_version {md.get('format_version')!r} (corrupt file)") from None
    newer = (f"written in format version {version} by lowrankedit {md.get('library_version')}; this lowrankedit "
             f"reads up to version {FORMAT_VERSION}: upgrade lowrankedit")
    try:
        _verify_checksum(data, md, path)
    except FileFormatError:
        if version > FORMAT_VERSION:  # a newer format may check itself differently; or the version byte is damaged
            raise FileFormatError(path, f"checksum mismatch: corrupt, or {newer}") from None
        raise
    if version > FORMAT_VERSION:
        raise FileFormatError(path, newer)
    if md.get("kind") != kind:
        raise FileFormatError(path, f"holds a {md.get('kind')!r} file, not {kind!r}: load it with the class that "
                                    f"wrote it ({_LOADERS.get(md.get('kind'), 'unknown kind')})")
    try:
        stored = safetensors.torch.load(data)
    except Exception as exc:  # checksum passed, so this is a file we could not have written
        raise FileFormatError(path, f"tensor data cannot be decoded ({type(exc).__name__}: {exc})") from None
    try:
        meta = json.loads(md["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FileFormatError(path, f"metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise FileFormatError(path, f"metadata is a {type(meta).__name__}, expected a JSON object")
    meta = _decode_meta(meta, stored, path)
    tensors = {}
    for name, t in stored.items():
        if name.startswith(_USER):
            tensors[name[len(_USER):]] = t
        elif not name.startswith(_META):
            raise FileFormatError(path, f"unexpected tensor name {name!r}")
    return tensors, meta


def atomic_write(path, data):
    """Write ``data`` (bytes) to ``path`` so that readers see the old file or the complete new one, never a mix.

    A temporary file is created exclusively (``O_EXCL | O_NOFOLLOW``, by :func:`tempfile.mkstemp`) under a unique
    name in the target folder, written, flushed and fsynced, then renamed over ``path`` (``os.replace``, atomic on
    one file system) and the folder fsynced. Any failure removes the temporary file and leaves ``path`` untouched.
    Concurrent writers (threads or processes) each rename a complete file; the last rename wins.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_UMASK)  # mkstemp makes 0600; a saved result gets the usual mode
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def convert_legacy(src, dst, *, trust=False):
    """Convert a file saved by lowrankedit before the safe format (``torch.save``, a pickle) into the safe format.

    Unpickling runs whatever code the file holds, so this is only for files you made yourself or otherwise
    trust, and it insists on ``trust=True``. The kind (Directions, Gram or PartsAppearances) is read off the
    file's contents; the new file is written with the class's own ``save``.

    Parameters
    ----------
    src : path
        The old ``torch.save`` file.
    dst : path
        Where to write the safe file (may equal ``src``: the write is atomic).
    trust : bool
        Must be ``True``: you vouch that ``src`` is not hostile.

    Returns
    -------
    str
        The kind written.
    """
    if trust is not True:
        raise ValueError(f"convert_legacy: refusing to unpickle {os.fspath(src)!r} without trust=True; old "
                         "lowrankedit files are pickles and loading one runs any code it holds. Pass trust=True "
                         "only for files you made yourself or otherwise trust")
    from .directions import Directions
    from .gram import Gram
    from .methods.panda import PartsAppearances

    d = torch.load(os.fspath(src), map_location="cpu", weights_only=False)
    if not isinstance(d, dict):
        raise FileFormatError(src, f"not an old lowrankedit file (holds a {type(d).__name__})")
    if d.get("format") == "lowrankedit.Directions/1":
        Directions(d["vectors"], d["scores"], d["meta"]).save(dst)
        return "directions"
    if {"fg", "bg", "n_fg", "n_bg"} <= set(d):
        Gram(d["fg"], d["bg"], d["n_fg"], d["n_bg"], tuple(d.get("latent_shape", ())), d.get("meta", {})).save(dst)
        return "gram"
    if {"appearances", "parts", "layer", "feature_shape"} <= set(d):
        PartsAppearances(d["appearances"], d["parts"], d["layer"], tuple(d["feature_shape"]),
                         d.get("meta", {})).save(dst)
        return "parts_appearances"
    raise FileFormatError(src, f"not an old lowrankedit file (keys {sorted(map(str, d))[:10]})")


# ----------------------------------------------------------------------------------------------------------------
# Internals

_LOADERS = {"directions": "lowrankedit.Directions.load", "gram": "lowrankedit.Gram.load",
            "parts_appearances": "lowrankedit.PartsAppearances.load",
            "evaluation": "lowrankedit.fileformat.load(path, 'evaluation')"}


def _read_umask():
    # Read once at import (os.umask has to set it to read it, which is not thread-safe later on).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a folder; the rename itself is still atomic
        pass
    finally:
        os.close(fd)


def _check_kind(kind, who):
    if kind not in KINDS:
        raise ValueError(f"{who}: expected kind in {KINDS}, got {kind!r}")


def _plain_tensor(t, where):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fileformat.save: expected {where} to be a torch.Tensor, got {type(t).__name__}")
    if t.layout != torch.strided:
        raise TypeError(f"fileformat.save: expected {where} to be a dense tensor, got layout {t.layout}")
    return t.detach().to("cpu").contiguous().clone()


def _encode_meta(x, stored, where):
    """JSON-ready copy of ``x``; tensors go into ``stored`` under ``m/<i>``."""
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, numbers.Integral):
        return int(x)
    if isinstance(x, numbers.Real):
        v = float(x)
        if math.isfinite(v):
            return v
        return {_MARK: "float", "value": "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")}
    if isinstance(x, torch.Tensor):
        name = f"{_META}{sum(1 for k in stored if k.startswith(_META))}"
        stored[name] = _plain_tensor(x, where)
        return {_MARK: "tensor", "name": name}
    if isinstance(x, tuple):
        return {_MARK: "tuple", "items": [_encode_meta(v, stored, f"{where}[{i}]") for i, v in enumerate(x)]}
    if isinstance(x, list):
        return [_encode_meta(v, stored, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise TypeError(f"fileformat.save: expected str keys in the metadata, got {k!r} in {where}")
            if k == _MARK:
                raise ValueError(f"fileformat.save: the metadata key {_MARK!r} is reserved (in {where})")
            out[k] = _encode_meta(v, stored, f"{where}[{k!r}]")
        return out
    raise TypeError(f"fileformat.save: cannot store {where} of type {type(x).__name__} in the metadata (expected "
                    "None, bool, int, float, str, list, tuple, dict or torch.Tensor)")


def _decode_meta(x, stored, path):
    if isinstance(x, list):
        return [_decode_meta(v, stored, path) for v in x]
    if not isinstance(x, dict):
        return x
    if _MARK not in x:
        return {k: _decode_meta(v, stored, path) for k, v in x.items()}
    mark = x[_MARK]
    if mark == "tensor" and x.get("name") in stored and str(x["name"]).startswith(_META):
        return stored[x["name"]]
    if mark == "tuple" and isinstance(x.get("items"), list):
        return tuple(_decode_meta(v, stored, path) for v in x["items"])
    if mark == "float" and x.get("value") in ("nan", "inf", "-inf"):
        return float(x["value"])
    raise FileFormatError(path, f"bad metadata entry {json.dumps(x)[:200]}")


def _legacy_problem(data):
    """A message when ``data`` looks like an old ``torch.save`` (pickle) file, else ``None``."""
    is_zip = data[:4] == b"PK\x03\x04"
    is_pickle = len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5
    if not (is_zip and b"data.pkl" in data[:4096]) and not is_pickle:
        return None
    return ("an old-format lowrankedit file (torch.save, a pickle), refused because unpickling runs any code a file "
            "holds. If you made this file yourself or otherwise trust it, convert it once with "
            "lowrankedit.fileformat.convert_legacy(src, dst, trust=True)")


def _header_metadata(data, path):
    if not data:
        raise FileFormatError(path, "empty file (0 bytes)")
    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else None
    header = None
    if n is not None and 2 <= n <= len(data) - 8 and data[8:9] == b"{":
        try:
            header = json.loads(data[8:8 + n].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            header = None
    if header is None:
        # Not a safetensors header: say what the file is when we can tell (an old pickle file is the likely case).
        if _legacy_problem(data):
            raise FileFormatError(path, _legacy_problem(data))
        if n is None:
            raise FileFormatError(path, f"truncated or not a lowrankedit file: {len(data)} bytes, shorter than a "
                                        "safetensors header")
        if not 2 <= n <= len(data) - 8:
            raise FileFormatError(path, f"truncated or not a lowrankedit (safetensors) file: the header claims {n} "
                                        f"bytes, the file has {len(data) - 8} after the length")
        raise FileFormatError(path, "corrupt or not a lowrankedit file: its header is not valid JSON")
    md = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(md, dict) or md.get("format") != FORMAT:
        raise FileFormatError(path, "not a lowrankedit file (a safetensors file without lowrankedit metadata)")
    return md


def _checksum_position(data, digest):
    """Offset of the 64 hex digits of ``"checksum":"sha256:<digest>"`` in the header, if it occurs exactly once."""
    (n,) = struct.unpack("<Q", bytes(data[:8]))
    needle = f'"{_CHECKSUM_PREFIX}{digest}"'.encode()
    header = bytes(data[8:8 + n])
    first = header.find(needle)
    if first < 0 or header.find(needle, first + 1) >= 0:
        return None
    return 8 + first + 1 + len(_CHECKSUM_PREFIX)


def _verify_checksum(data, md, path):
    claimed = md.get("checksum")
    digest = claimed[len(_CHECKSUM_PREFIX):] if isinstance(claimed, str) and claimed.startswith(_CHECKSUM_PREFIX) \
        else None
    at = _checksum_position(data, digest) if digest and len(digest) == 64 else None
    if at is None:
        raise FileFormatError(path, f"corrupt file: bad checksum field {str(claimed)[:80]!r}")
    zeroed = bytearray(data)
    zeroed[at:at + 64] = _ZERO_DIGEST.encode()
    actual = hashlib.sha256(zeroed).hexdigest()
    if actual != digest:
        raise FileFormatError(path, "corrupt file: checksum mismatch (the file was truncated, altered or damaged "
                                    "after it was written)")
