"""Latent spaces of StyleGAN generators (Z, W, W+ and layer subsets) and the one rule for applying a direction.

Every StyleGAN-like generator in the package (our own :func:`~lowrankedit.models.stylegan2` and the adapters of
users' NVlabs and rosinality objects) is a :class:`StyleGANSpace`: it maps ``z`` to ``ws (n, num_ws, w_dim)`` and
synthesizes from ``ws``; the space only decides what one latent code is and how it becomes ``ws``.

- ``"z"``: ``latent_shape == (z_dim,)``; the mapping network (with the generator's truncation) is part of the
  differentiated function.
- ``"w"``: ``latent_shape == (w_dim,)``; one W broadcast to all ``num_ws`` layers, ``ws = S w`` with
  ``S = 1_{num_ws} (x) I_{w_dim}``.
- ``"wplus"``: ``latent_shape == (num_ws, w_dim)``; one w per layer.
- ``layers=`` (with ``"w"`` or ``"wplus"``): only the ws of those layer indices move. The image of a code is
  unchanged; derivatives reach only those layers (the other rows are detached), so a Jacobian in ``"w"`` with
  layers ``L`` is ``J_{W+} S_L`` and :func:`apply_direction` moves only rows ``L``, as ReSeFa's default edits do
  (layers 4-7).
"""
import math

import torch

SPACES = ("z", "w", "wplus")


def check_space(space, layers, num_ws, who):
    """Validate ``space`` and ``layers``; return ``(space, layers)`` with layers a sorted tuple of ints or None."""
    if space not in SPACES:
        raise ValueError(f"{who}: expected space in {SPACES}, got {space!r}")
    if layers is None:
        return space, None
    if space == "z":
        raise ValueError(f"{who}: layers={layers!r} restricts which ws move, so it needs space='w' or 'wplus', "
                         "got space='z'")
    try:
        idx = sorted({int(i) for i in layers})
    except (TypeError, ValueError):
        raise ValueError(f"{who}: expected layers to be an iterable of layer indices, got {layers!r}") from None
    if not idx or idx[0] < 0 or idx[-1] >= num_ws:
        raise ValueError(f"{who}: expected layers to be a non-empty subset of range({num_ws}) (num_ws={num_ws}), "
                         f"got {list(layers)}")
    return space, tuple(idx)


class StyleGANSpace:
    """The generator protocol for a StyleGAN-like generator in one latent space.

    Subclasses set ``z_dim``, ``w_dim``, ``num_ws``, ``img_resolution`` and call :meth:`_init_space`; they implement
    ``_mapping(z, truncation_psi, truncation_cutoff) -> ws (n, num_ws, w_dim)`` and ``_synthesis(ws) -> images``,
    and may provide ``features`` / ``synthesize_from`` (feature layers ``layers``).

    Attributes
    ----------
    space : {"z", "w", "wplus"}
    w_layers : tuple of int or None
        The layer indices whose ws move (None: all).
    latent_shape : tuple
        ``(z_dim,)``, ``(w_dim,)`` or ``(num_ws, w_dim)``.
    truncation_psi, truncation_cutoff :
        Truncation used by :meth:`sample_latents` (and by the mapping in space ``"z"``).
    """

    def _init_space(self, space, layers, truncation_psi=1.0, truncation_cutoff=None, who="StyleGAN"):
        self.space, self.w_layers = check_space(space, layers, self.num_ws, who)
        psi = float(truncation_psi)
        if not math.isfinite(psi):
            raise ValueError(f"{who}: expected a finite truncation_psi, got {truncation_psi!r}")
        if truncation_cutoff is not None and not (isinstance(truncation_cutoff, int) and truncation_cutoff > 0):
            raise ValueError(f"{who}: expected truncation_cutoff to be None or a positive int, "
                             f"got {truncation_cutoff!r}")
        if space == "w" and truncation_cutoff is not None:
            raise ValueError(f"{who}: a W code is shared by all layers, so truncation_cutoff={truncation_cutoff!r} "
                             "(truncating only the first layers) needs space='wplus'")
        self.truncation_psi, self.truncation_cutoff = psi, truncation_cutoff
        self.latent_shape = {"z": (self.z_dim,), "w": (self.w_dim,), "wplus": (self.num_ws, self.w_dim)}[space]

    # -- what subclasses provide -----------------------------------------------------------------------------

    def _mapping(self, z, truncation_psi, truncation_cutoff):  # pragma: no cover - abstract
        raise NotImplementedError

    def _synthesis(self, ws):  # pragma: no cover - abstract
        raise NotImplementedError

    def _param_like(self):
        """``(device, dtype)`` of the generator's weights (CPU float32 when it has none)."""
        p = next(iter(self.parameters()), None) if isinstance(self, torch.nn.Module) else None
        return (p.device, p.dtype) if p is not None else (torch.device("cpu"), torch.float32)

    # -- the protocol ----------------------------------------------------------------------------------------

    @property
    def ws_shape(self):
        return (self.num_ws, self.w_dim)

    def map_z(self, z, truncation_psi=None, truncation_cutoff=None):
        """``z (n, z_dim)`` -> ``ws (n, num_ws, w_dim)`` through the mapping network (the generator's truncation
        unless given)."""
        if not isinstance(z, torch.Tensor) or z.dim() != 2 or z.shape[1] != self.z_dim:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"{type(self).__name__}.map_z: expected z of shape (n, {self.z_dim}), got {got}")
        psi = self.truncation_psi if truncation_psi is None else float(truncation_psi)
        cutoff = self.truncation_cutoff if truncation_cutoff is None else truncation_cutoff
        return self._mapping(z, psi, cutoff)

    def sample_latents(self, n, seed=0, truncation_psi=None):
        """``(n, *latent_shape)`` codes: z drawn from ``N(0, I)`` on the CPU from ``seed`` (so the same on every
        device), then mapped to W / W+ (with truncation ``truncation_psi``, default the generator's).

        In space ``"z"`` the truncation belongs to the generator (``truncation_psi=`` at construction), so an
        explicit ``truncation_psi`` is refused there.
        """
        device, dtype = self._param_like()
        z = torch.randn(int(n), self.z_dim, generator=torch.Generator().manual_seed(int(seed)))
        z = z.to(device=device, dtype=dtype)
        if self.space == "z":
            if truncation_psi is not None:
                raise ValueError(f"{type(self).__name__}.sample_latents: in space 'z' truncation is part of the "
                                 "generator (truncation_psi= at construction); got truncation_psi="
                                 f"{truncation_psi!r}")
            return z
        with torch.no_grad():
            ws = self.map_z(z, truncation_psi)
        return ws[:, 0].contiguous() if self.space == "w" else ws.contiguous()

    def _check_codes(self, latents, who, allow_wplus=False):
        """Return the code space of ``latents``: the generator's own, or ``"wplus"`` for ``(n, num_ws, w_dim)``
        codes when ``allow_wplus``."""
        if not isinstance(latents, torch.Tensor):
            raise TypeError(f"{who}: expected latents to be a torch.Tensor, got {type(latents).__name__}")
        own = tuple(self.latent_shape)
        shape = tuple(latents.shape)
        if latents.dim() == len(own) + 1 and shape[1:] == own:
            space = self.space
        elif allow_wplus and latents.dim() == 3 and shape[1:] == self.ws_shape:
            space = "wplus"
        else:
            also = f" or W+ codes (n, {self.num_ws}, {self.w_dim})" if allow_wplus and self.space != "wplus" else ""
            raise ValueError(f"{who}: expected latents of shape (n, {', '.join(map(str, own))}) (space "
                             f"{self.space!r}){also}, got {shape}")
        if not latents.is_floating_point():
            raise TypeError(f"{who}: expected floating-point latents, got {latents.dtype}")
        return space

    def to_ws(self, latents, space=None):
        """Codes of ``space`` (default the generator's) -> ``ws (n, num_ws, w_dim)``.

        With ``layers`` set, the rows outside them are detached: same values, no derivative through them.
        """
        space = self.space if space is None else space
        if space == "z":
            ws = self.map_z(latents)
        elif space == "w":
            ws = latents[:, None, :].expand(-1, self.num_ws, -1)
        else:
            ws = latents
        if self.w_layers is not None and space != "z":
            moving = torch.zeros(self.num_ws, 1, dtype=torch.bool, device=ws.device)
            moving[list(self.w_layers)] = True
            ws = torch.where(moving, ws, ws.detach())
        return ws

    def synthesize(self, latents):
        """Images ``(n, 3, H, W)`` of codes ``(n, *latent_shape)``; differentiable in the codes."""
        self._check_codes(latents, f"{type(self).__name__}.synthesize")
        return self._synthesis(self.to_ws(latents))

    def synthesize_ws(self, ws):
        """Images of ``ws (n, num_ws, w_dim)``, whatever the generator's space."""
        if not isinstance(ws, torch.Tensor) or ws.dim() != 3 or tuple(ws.shape[1:]) != self.ws_shape:
            got = tuple(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
            raise ValueError(f"{type(self).__name__}.synthesize_ws: expected ws of shape (n, {self.num_ws}, "
                             f"{self.w_dim}), got {got}")
        return self._synthesis(ws)

    def space_meta(self):
        """What a direction found on this generator needs to record about its space."""
        return {"space": self.space, "w_layers": None if self.w_layers is None else list(self.w_layers),
                "num_ws": self.num_ws, "w_dim": self.w_dim, "z_dim": self.z_dim}

    def forward(self, latents):
        return self.synthesize(latents)


def _direction_space(G, direction, who):
    shape = tuple(direction.shape)
    if G.space == "z" and shape == (G.z_dim,):
        return "z"
    if shape == (G.w_dim,):
        return "w"
    if shape == G.ws_shape:
        return "wplus"
    raise ValueError(f"{who}: expected a direction of shape {describe_direction_shapes(G)}, got {shape}")


def describe_direction_shapes(G):
    """:func:`direction_shapes` in words, e.g. ``"(512,) in W or (14, 512) in W+"``."""
    if not isinstance(G, StyleGANSpace):
        return " or ".join(str(s) for s in direction_shapes(G))
    allowed = [f"({G.z_dim},) in Z"] if G.space == "z" else []
    return " or ".join(allowed + [f"({G.w_dim},) in W", f"({G.num_ws}, {G.w_dim}) in W+"])


def direction_offset(G, direction, code_space, who="apply_direction"):
    """The ``(num_ws, w_dim)`` change of ``ws`` per unit of ``alpha`` for a W or W+ ``direction`` on codes of
    ``code_space``; None for a Z direction on Z codes (the move happens before the mapping).

    The rule, in one place:

    - a Z direction moves Z codes only;
    - a W direction moves every layer by the same vector (explicit broadcast ``S d``), or only the generator's
      ``layers`` (``S_L d``);
    - a W+ direction moves W+ (or Z-mapped) codes row by row; on W codes it is refused (a W code has one row);
      with ``layers`` set, it must be zero outside them.
    """
    dspace = _direction_space(G, direction, who)
    if dspace == "z":
        if code_space != "z":
            raise ValueError(f"{who}: a Z direction moves z before the mapping network, so it cannot apply to "
                             f"{code_space!r} codes; give Z codes (n, {G.z_dim})")
        return None
    if dspace == "wplus" and code_space == "w":
        raise ValueError(f"{who}: a W+ direction ({G.num_ws}, {G.w_dim}) cannot apply to W codes (n, {G.w_dim}): "
                         f"a W code is one w shared by all layers; give W+ codes (n, {G.num_ws}, {G.w_dim}), e.g. "
                         "G.to_ws(codes), or a W direction")
    offset = direction[None].expand(G.num_ws, -1) if dspace == "w" else direction
    if G.w_layers is not None:
        keep = torch.zeros(G.num_ws, 1, dtype=direction.dtype, device=direction.device)
        keep[list(G.w_layers)] = 1
        if dspace == "wplus":
            outside = float((direction * (1 - keep)).norm())
            if outside > 1e-4 * max(float(direction.norm()), 1e-30):
                raise ValueError(f"{who}: the W+ direction has norm {outside:.3g} outside the generator's layers "
                                 f"{list(G.w_layers)} (which alone move); zero those rows or use a generator "
                                 "without layers=")
        offset = offset * keep
    return offset


def direction_shapes(G):
    """The shapes one direction may have on ``G``: its latent shape; on a StyleGAN generator also W and W+ (and Z
    in space ``"z"``), which :func:`direction_offset` maps onto its codes."""
    if not isinstance(G, StyleGANSpace):
        return [tuple(int(s) for s in G.latent_shape)]
    shapes = [(G.z_dim,)] if G.space == "z" else []
    return shapes + [(G.w_dim,), tuple(G.ws_shape)]


def apply_direction(G, latents, directions, alphas):
    """Images of codes moved along a chain of directions: ``(n, k, 3, H, W)``, no gradient.

    Parameters
    ----------
    G : generator
        Any generator; StyleGAN-like ones (:class:`StyleGANSpace`) follow the space rule of
        :func:`direction_offset` and also accept W+ codes ``(n, num_ws, w_dim)``.
    latents : torch.Tensor
        ``(n, *G.latent_shape)`` (or W+ codes for a StyleGAN generator).
    directions : torch.Tensor
        ``(m, *shape)``, ``shape`` one of :func:`direction_shapes`.
    alphas : torch.Tensor
        ``(n, k, m)`` finite strengths on the latents' device and dtype: edit ``j`` of code ``i`` moves by
        ``sum_c alphas[i, j, c] * d_c``.
    """
    n, k, m = alphas.shape
    if not isinstance(G, StyleGANSpace):
        from .protocol import check_latents

        check_latents(G, latents, "edit")
        shape = tuple(G.latent_shape)
        if tuple(directions.shape[1:]) != shape:
            raise ValueError(f"edit: expected direction of shape {shape}, got {tuple(directions.shape[1:])}")
        moved = latents[:, None] + torch.einsum("nkm,md->nkd", alphas, directions.reshape(m, -1)).reshape(n, k, *shape)
        with torch.no_grad():
            images = G.synthesize(moved.reshape(n * k, *shape))
        return images.reshape(n, k, *images.shape[1:])
    code_space = G._check_codes(latents, "edit", allow_wplus=True)
    if not torch.isfinite(latents).all():
        raise ValueError("edit: latents contain NaN or Inf")
    offsets = [direction_offset(G, d, code_space, "edit") for d in directions]
    with torch.no_grad():
        if all(o is None for o in offsets):  # Z directions on Z codes
            moved = latents[:, None] + torch.einsum("nkm,md->nkd", alphas, directions.reshape(m, -1))
            images = G.synthesize(moved.reshape(n * k, -1))
        elif any(o is None for o in offsets):
            raise ValueError("edit: a chain mixes Z directions (moved before the mapping) with W / W+ ones; edit "
                             "with each kind on its own")
        else:  # W / W+ directions: every offset is (num_ws, w_dim)
            base = G.to_ws(latents, code_space)
            moved = base[:, None] + torch.einsum("nkm,mlw->nklw", alphas, torch.stack(offsets))
            images = G.synthesize_ws(moved.reshape(n * k, G.num_ws, G.w_dim))
    return images.reshape(n, k, *images.shape[1:])
