"""The farm's use cases: resolve, wait, search, details, build status and logs.

They take ports, return protocol models and raise PkgcErrors; they never know whether they run under uvicorn on a
laptop or in Lambda. State lives only in the ports, so every call is stateless and can be retried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pkgc.core.buildspec import BuildSpec, PackageRequest, plan_builds
from pkgc.core.debian import GENERATED_MARK
from pkgc.core.errors import NotFound, PkgcError, UnsupportedPlatform, UsageError
from pkgc.core.names import validate_name
from pkgc.core.options import global_option_specs
from pkgc.core.platform import Platform, choose_build_platform
from pkgc.core.protocol import (
    MAX_ERROR_LENGTH,
    MAX_LAST_LINE_LENGTH,
    MAX_SKIP_REASON_LENGTH,
    MAX_WAIT_SECONDS,
    BuildInfo,
    BuildStatus,
    CatalogResponse,
    ClientPlatform,
    DebianCatalogState,
    PackageDetails,
    PackageSummary,
    ResolveRequest,
    ResolveResponse,
    VariantInfo,
    WaitResponse,
)
from pkgc.core.recipe import Recipe, parse_recipe
from pkgc.core.text import visible
from pkgc.core.versions import Version
from pkgc.farm.ports import (
    BlobStore,
    BuildRecord,
    BuildStore,
    CatalogStore,
    FarmPorts,
    GeneratedRecipes,
    QueueRouter,
)
from pkgc.farm.work import send_when_dependencies_finish

log = logging.getLogger(__name__)

_KEY_LENGTH = 64
RECIPE_TTL_SECONDS = 2.0
_RECIPE_CACHE_SIZE = 100_000
_PLAN_CACHE_SIZE = 4096
_READY_CACHE_SIZE = 65536
_PLATFORM_CHOICES_SIZE = 1024


_STALE = "\x00stale"  # never a recipe's text (TOML cannot hold a NUL)


def _plan_key(request: ResolveRequest, platform: Platform) -> str:
    """The memo key of a plan: the packages with their options, and the build platform they are planned for."""
    return json.dumps([str(platform), [p.model_dump(mode="json") for p in request.packages]], sort_keys=True)


@dataclass(frozen=True)
class _Plan:
    """A memoised plan and the exact recipe texts it was computed from (it is valid while they are current)."""

    specs: list[BuildSpec]
    requested: list[str]
    recipe_texts: dict[str, str]
    cpus: frozenset[str] = frozenset()  # the `cpu` options of its builds: a client must be able to run each


def encode_catalog(
    packages: Iterable[tuple[str, str, str]], generated: Iterable[tuple[str, str, str, str]] = ()
) -> bytes:
    """The catalog snapshot: the /v1/catalog document itself, so the endpoint serves the stored bytes as they are.

    `generated` (name, summary, version, homepage) adds the packages only a generated catalog knows; a curated
    package of the same name is the one listed. Sorted by name, so the document (and its ETag) is deterministic.
    """
    summaries = {n: PackageSummary(name=n, summary=s, latest=v) for n, s, v in packages}
    for name, summary, version, homepage in generated:
        if name not in summaries:
            summaries[name] = PackageSummary.model_construct(name=name, summary=summary, latest=version, homepage=homepage)
    document = CatalogResponse.model_construct(packages=[summaries[n] for n in sorted(summaries)])
    return document.model_dump_json(exclude={"debian"}).encode()


def with_debian_state(snapshot: bytes, state: DebianCatalogState) -> bytes:
    """The catalog document: the stored snapshot with the Debian catalog's live state added as its last member.

    Spliced into the bytes rather than parsed and encoded again: the snapshot of 34,000 packages is 6 MB."""
    body = snapshot.rstrip()
    if not body.endswith(b"}"):
        raise ValueError("the catalog snapshot is not a JSON object")
    return body[:-1] + b',"debian":' + state.model_dump_json(exclude_none=True).encode() + b"}"


@dataclass(frozen=True)
class _CatalogView:
    """The catalog snapshot as last read: its bytes (served, and hashed for the ETag) and its packages (searched)."""

    read_at: float
    data: bytes
    etag: str
    packages: list[PackageSummary]
    lowered: list[tuple[str, str]]  # (name, summary in lower case) per package, for search

    @classmethod
    def of(cls, data: bytes, read_at: float) -> _CatalogView:
        packages = CatalogResponse.model_validate_json(data).packages
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        return cls(read_at, data, etag, packages, [(p.name, p.summary.lower()) for p in packages])


@dataclass(frozen=True)
class _Ready:
    """A ready build's answer as kept in memory, with the blob names its URLs were made from and the time (by the
    service's clock) after which they are made again: half their lifetime, never (inf) for URLs that do not expire."""

    info: BuildInfo
    artifact: str | None
    log: str | None
    refresh_at: float


@dataclass(frozen=True)
class BuildAdmission:
    """The builds a resolve is about to start, told to its `admit` callback before any is created: `new` keys to
    create, `retry` failed builds to queue again (asked with retry_failed). The callback raises to refuse."""

    new: tuple[str, ...]
    retry: tuple[str, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return self.new + self.retry


@dataclass(frozen=True)
class PublishOutcome:
    """The recipes a publication put into the catalog, and those it skipped, each with its source and error."""

    published: list[tuple[str, Recipe]]
    skipped: list[tuple[str, Exception]]


def recipe_error_reason(exc: Exception) -> str:
    """A skipped recipe's error as one line of at most MAX_SKIP_REASON_LENGTH characters (for a log, a terminal, an
    answer): our own errors and OS errors say it themselves; anything else is prefixed with its type."""
    reason = str(exc) if isinstance(exc, PkgcError | OSError) else f"{type(exc).__name__}: {exc}"
    return visible(" ".join(reason.split()))[:MAX_SKIP_REASON_LENGTH]


def validate_key(key: str) -> str:
    if len(key) != _KEY_LENGTH or any(c not in "0123456789abcdef" for c in key):
        raise UsageError(f"invalid build key {key[:80]!r}", hint="a build key is 64 lower-case hex digits")
    return key


@dataclass
class FarmService:
    catalog: CatalogStore
    builds: BuildStore
    queues: QueueRouter
    blobs: BlobStore
    # The default build platform: the one a request without a platform (an older client) is planned for. The
    # embedded farm builds for its own machine's; a deployment may add more (`build_platforms`).
    platform: Platform
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    # A wait long-polls the store every `poll_interval` seconds for at most `max_wait` (never more than the
    # protocol's MAX_WAIT_SECONDS); the composition root sets both per deployment (Lambda: about 1 s, 20 s, inside
    # API Gateway's 29 s).
    poll_interval: float = 0.1
    max_wait: float = MAX_WAIT_SECONDS
    requeue_after: float = 600.0
    recipe_ttl: float = RECIPE_TTL_SECONDS
    build_platforms: tuple[Platform, ...] = ()
    # Recipes generated from the Debian source catalog, for names the curated catalog lacks (None: none).
    generated: GeneratedRecipes | None = None
    # The generated catalog's live state (the embedded farm's Debian catalog: absent, loading, loaded, failed), sent
    # with /v1/catalog and named when a package is unknown while it loads (None: this farm does not report one).
    debian_state: Callable[[], DebianCatalogState] | None = None
    _debian_sent: bytes = b""
    _recipes: dict[str, tuple[str, Recipe]] = field(default_factory=dict)
    _recipe_texts: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    _plans: OrderedDict[str, _Plan] = field(default_factory=OrderedDict)
    _ready: OrderedDict[str, _Ready] = field(default_factory=OrderedDict)
    _platform_choices: dict[tuple[str, str, str, str], Platform | None] = field(default_factory=dict)
    _catalog_view: _CatalogView | None = None

    # -- platforms -----------------------------------------------------------------------------------------
    @classmethod
    def from_ports(cls, ports: FarmPorts, platform: Platform, **settings: Any) -> FarmService:
        """The service over a deployment's ports (as `BuildLifecycle.from_ports` is for the workers' use cases)."""
        return cls(
            catalog=ports.catalog, builds=ports.builds, queues=ports.queues, blobs=ports.blobs, platform=platform,
            **settings,
        )  # fmt: skip

    @property
    def platforms(self) -> tuple[Platform, ...]:
        """Every build platform this farm builds for, the default first."""
        return tuple(dict.fromkeys((self.platform, *self.build_platforms)))

    def build_platform_for(self, client: ClientPlatform | None) -> Platform:
        """The build platform whose binaries run on the client: the newest with the client's os, architecture and C
        library and a C library no newer than the client's; the default one for a request that states none.

        Raises UnsupportedPlatform (422) naming the platforms this farm builds for when none fits.
        """
        if client is None:
            return self.platform
        ident = (client.os, client.arch, client.libc, client.libc_version)
        if ident in self._platform_choices:
            chosen = self._platform_choices[ident]
        else:
            chosen = choose_build_platform(client.platform(), self.platforms)
            if len(self._platform_choices) >= _PLATFORM_CHOICES_SIZE:
                self._platform_choices.clear()
            self._platform_choices[ident] = chosen
        if chosen is None:
            raise UnsupportedPlatform(
                f"this farm builds for {', '.join(map(str, self.platforms))}; none of them runs on {client.platform()}",
                hint="a build runs where the os, architecture and C library match and the C library is no older",
            )
        return chosen

    @staticmethod
    def _check_cpu_levels(plan: _Plan, client: ClientPlatform | None) -> None:
        """Refuse a CPU target the client's processor cannot run (it would die with SIGILL at the first use)."""
        if client is None:
            return
        beyond = sorted(plan.cpus - set(client.cpu_levels))
        if beyond:
            raise UnsupportedPlatform(
                f"cpu={beyond[0]} is not a CPU level this machine can run",
                hint=f"it runs {', '.join(client.cpu_levels)}",
            )

    # -- catalog -------------------------------------------------------------------------------------------
    def publish_recipe(self, recipe_text: str, *, source: str = "recipe") -> Recipe:
        """Publish one recipe and rewrite the catalog snapshot."""
        recipe = self._put_recipe(recipe_text, source)
        self.write_catalog_snapshot()
        return recipe

    def publish_recipes(self, texts: Iterable[tuple[str, str]]) -> list[tuple[str, Exception]]:
        """Publish (source, text) pairs and write the catalog snapshot once, at the end.

        A recipe that fails (its TOML, its fields) is skipped and returned with its error, so one broken file does
        not keep the others from serving.
        """
        failed: list[tuple[str, Exception]] = []
        for source, text in texts:
            try:
                self._put_recipe(text, source)
            except Exception as exc:  # any error in one recipe skips that recipe only; the caller names it
                failed.append((source, exc))
        self.write_catalog_snapshot()
        return failed

    def publish_batch(self, texts: Iterable[tuple[str, str]]) -> PublishOutcome:
        """Publish (source, text) pairs that parse; a recipe that does not (its TOML, its fields) is skipped and
        returned with its error. Unlike `publish_recipes`, a store error is raised, not blamed on the recipe: the
        API answers it as the farm's failure (5xx), and the deploy command stops with it. The catalog snapshot is
        written once, at the end, when anything was published."""
        published: list[tuple[str, Recipe]] = []
        skipped: list[tuple[str, Exception]] = []
        for source, text in texts:
            try:
                recipe = parse_recipe(text, source=source)
            except Exception as exc:  # any error of one recipe's text skips that recipe only; the caller names it
                skipped.append((source, exc))
                continue
            self.catalog.put_recipe(recipe.name, text, recipe.summary, recipe.newest_version().version)
            self._recipe_texts.pop(recipe.name, None)  # this process sees its own publication at once
            published.append((source, recipe))
        if published:
            self.write_catalog_snapshot()
        return PublishOutcome(published, skipped)

    def _put_recipe(self, recipe_text: str, source: str) -> Recipe:
        recipe = parse_recipe(recipe_text, source=source)
        self.catalog.put_recipe(recipe.name, recipe_text, recipe.summary, recipe.newest_version().version)
        self._recipe_texts.pop(recipe.name, None)  # this process sees its own publication at once
        return recipe

    def write_catalog_snapshot(self) -> None:
        """Scan the catalog once and store the snapshot that search and /v1/catalog read: the only scan."""
        data = encode_catalog(self.catalog.list_packages(), self.generated.packages() if self.generated else ())
        self.catalog.write_snapshot(data)
        self._catalog_view = _CatalogView.of(data, time.monotonic())

    def _catalog(self) -> _CatalogView:
        """The catalog snapshot, read from the store at most once per `recipe_ttl` seconds and parsed only when its
        bytes changed: a publication by another process is seen within the TTL, and no request scans the catalog.
        A store without a snapshot yet (a database from before snapshots) gets one written, once."""
        now = time.monotonic()
        view = self._catalog_view
        if view is not None and now - view.read_at < self.recipe_ttl:
            return view
        data = self.catalog.read_snapshot()
        if data is None:
            self.write_catalog_snapshot()
            assert self._catalog_view is not None
            return self._catalog_view
        if view is not None and view.data == data:
            view = _CatalogView(now, view.data, view.etag, view.packages, view.lowered)
        else:
            view = _CatalogView.of(data, now)
        self._catalog_view = view
        return view

    def _recipe_text(self, name: str, *, memory_only: bool = False) -> str | None:
        """The recipe's text, read from the catalog at most once per `recipe_ttl` seconds.

        Resolving is the farm's hot path and every resolve needs every recipe of the closure; a recipe published by
        another process (another Lambda container, the refresh) is seen within `recipe_ttl` seconds. With
        `memory_only`, an expired or unknown entry gives `_STALE` instead of a store read.
        """
        now = time.monotonic()
        cached = self._recipe_texts.get(name)
        if cached is not None and now - cached[0] < self.recipe_ttl:
            return cached[1]
        if memory_only:
            return _STALE
        text = self.catalog.get_recipe_text(name)
        if text is None and self.generated is not None:  # a curated recipe overrides a generated one
            text = self.generated.identity(name)
        if cached is not None and cached[1] == text:
            text = cached[1]  # the same object as before, so that the plans made from it compare in constant time
        if len(self._recipe_texts) >= _RECIPE_CACHE_SIZE:
            self._recipe_texts.clear()
        self._recipe_texts[name] = (now, text)
        return text

    def recipe(self, name: str) -> Recipe:
        validate_name(name)
        text = self._recipe_text(name)
        if text is None:
            raise NotFound(f"unknown package '{name}'", hint=self._unknown_package_hint())
        cached = self._recipes.get(name)
        if cached is None or cached[0] != text:
            if text.startswith(GENERATED_MARK):
                generated = self.generated.recipe(name) if self.generated is not None else None
                if generated is None:
                    raise NotFound(f"no recipe can be generated for '{name}'", hint="its Debian source has no usable tarball")
                cached = (text, generated)
            else:
                cached = (text, parse_recipe(text, source=f"{name}.toml"))
            self._recipes[name] = cached
        return cached[1]

    def _unknown_package_hint(self) -> str:
        """While the Debian catalog loads, an unknown package may just not be there yet: say so."""
        state = self.debian_state() if self.debian_state is not None else None
        if state is not None and state.state == "loading":
            started = f" (started {max(0, int(time.time() - state.since))} s ago)" if state.since is not None else ""
            return f"the farm's Debian catalog is still loading{started}; try again in a minute"
        return "try 'pkgc search'"

    def search(self, term: str) -> list[PackageSummary]:
        """Ranked as the client's offline search: exact name, name prefix, name substring, then summary
        substring; in name order within a tier."""
        needle = term.strip().lower()
        if len(needle) > 100:
            raise UsageError("search term is longer than 100 characters")
        view = self._catalog()
        ranked: list[tuple[int, str, PackageSummary]] = []
        for (name, summary), package in zip(view.lowered, view.packages, strict=True):
            if name == needle:
                rank = 0
            elif name.startswith(needle):
                rank = 1
            elif needle in name:
                rank = 2
            elif needle in summary:
                rank = 3
            else:
                continue
            ranked.append((rank, name, package))
        return [item for _, _, item in sorted(ranked, key=lambda r: (r[0], r[1]))]

    def catalog_snapshot(self) -> list[PackageSummary]:
        return self._catalog().packages

    def catalog_document(self, *, with_debian: bool = False) -> tuple[bytes, str]:
        """The /v1/catalog body (the stored snapshot's bytes; `with_debian`: with the Debian catalog's live state
        when this farm reports one) and its ETag (derived from both, so a client's copy follows the state too).
        The state is sent only to clients that ask: the protocol's models refuse unknown fields, so an older client
        would refuse a document holding it."""
        if self.debian_state is None or not with_debian:
            view = self._catalog()
            return view.data, view.etag
        state = self.debian_state().model_dump_json(exclude_none=True).encode()
        if state != self._debian_sent:
            # The update rewrote the snapshot before its state changed: read it now, not within the TTL, so that
            # "loaded" never goes out with the snapshot from before the load.
            self._debian_sent = state
            self._catalog_view = None
        view = self._catalog()
        etag = '"' + hashlib.sha256(view.etag.encode() + b"\0" + state).hexdigest()[:32] + '"'
        return with_debian_state(view.data, DebianCatalogState.model_validate_json(state)), etag

    def builds_of(self, name: str) -> list[BuildInfo]:
        self.recipe(name)  # unknown packages are a 404, not an empty list
        return [self.to_info(record) for record in self.builds.builds_of(name)]

    def details(self, name: str, platform: Platform | None = None) -> PackageDetails:
        """A package's versions and options; the global options (CPU targets) are those of `platform`'s
        architecture when the client names its platform, else of the default build platform's."""
        recipe = self.recipe(name)
        arch = (platform or self.platform).arch

        def info(spec_name: str, spec: object) -> VariantInfo:
            from pkgc.core.options import OptionSpec

            assert isinstance(spec, OptionSpec)
            values = ["true", "false"] if spec.is_bool else list(spec.values)
            return VariantInfo(
                name=spec_name,
                description=spec.description,
                default=spec.canonical(spec.default),
                values=values,
            )

        return PackageDetails(
            name=recipe.name,
            summary=recipe.summary,
            homepage=recipe.homepage,
            license=recipe.license,
            versions=sorted((v.version for v in recipe.versions), key=Version, reverse=True),
            variants=[info(n, s) for n, s in sorted(recipe.variants.items())],
            global_options=[info(n, s) for n, s in global_option_specs(arch).items()],
            build_dependencies=list(recipe.build_dependencies),
            runtime_dependencies=list(recipe.runtime_dependencies),
            origin="generated" if recipe.origin == "generated" else "curated",
        )

    # -- builds --------------------------------------------------------------------------------------------
    def resolve(
        self, request: ResolveRequest, admit: Callable[[BuildAdmission], None] | None = None
    ) -> ResolveResponse:
        """Plan every build the request needs; create the missing ones (exactly once per key) and enqueue them.

        With `admit`, first tell it which builds this call would start (see `admission`); it raises to refuse, and
        then nothing is created or queued.
        """
        client = request.platform
        plan = self._plan(request, self.build_platform_for(client))
        self._check_cpu_levels(plan, client)
        specs, requested = plan.specs, plan.requested
        if admit is not None:
            admission = self.admission(specs, retry_failed=request.retry_failed)
            if admission.keys:
                admit(admission)
        builds = []
        for spec in specs:
            # A ready build never changes (its key names its content): answer it from memory, no store round trip;
            # only its URLs are made again when they near their expiry (presigned ones).
            ready = self._ready.get(spec.key)
            if ready is None:
                record = self._ensure_build(spec, retry_failed=request.retry_failed)
                if record.status != BuildStatus.READY:
                    builds.append(self.to_info(record))
                    continue
                ready = self._remember_ready(record)
            elif self._expiring(ready):
                ready = self._refresh(spec.key, ready)
            builds.append(ready.info)
        return ResolveResponse(requested=requested, builds=builds)

    def admission(self, specs: list[BuildSpec], *, retry_failed: bool) -> BuildAdmission:
        """The builds of `specs` a resolve would start now: absent ones, and failed ones when retrying them.

        One batch read. A concurrent resolve may create one of them in between: then this caller was counted for
        a build it did not start, which errs on the side of the quota.
        """
        wanted = [key for key in dict.fromkeys(spec.key for spec in specs) if key not in self._ready]
        records = self.builds.get_many(wanted) if wanted else {}
        new = tuple(key for key in wanted if key not in records)
        retry = tuple(
            key for key in wanted if retry_failed and key in records and records[key].status == BuildStatus.FAILED
        )
        return BuildAdmission(new=new, retry=retry)

    def resolve_from_memory(self, request: ResolveRequest) -> ResolveResponse | None:
        """The answer to a resolve whose builds are all ready and whose plan is known, without touching a store;
        None otherwise. An event loop can call this inline and send everything else to `resolve` in a thread."""
        client = request.platform
        if client is None:
            platform = self.platform
        else:
            found = self._platform_choices.get((client.os, client.arch, client.libc, client.libc_version))
            if found is None:
                return None  # not yet chosen, or no platform fits: `resolve` decides and explains
            platform = found
        cached = self._plans.get(_plan_key(request, platform))
        if cached is None or any(self._recipe_text(n, memory_only=True) != t for n, t in cached.recipe_texts.items()):
            return None
        if client is not None and not cached.cpus <= set(client.cpu_levels):
            return None
        builds = []
        for spec in cached.specs:
            ready = self._ready.get(spec.key)
            # (`_expiring`, inlined: the embedded farm's URLs never expire, so it never reads the clock here)
            if ready is None or (ready.refresh_at != math.inf and self.clock() >= ready.refresh_at):
                return None  # not known ready, or its URLs are due to be made again: `resolve` does that
            builds.append(ready.info)
        return ResolveResponse(requested=cached.requested, builds=builds)

    def _plan(self, request: ResolveRequest, platform: Platform) -> _Plan:
        """`plan_builds` for the request on the build `platform`, memoised while every recipe it read is unchanged.

        Planning parses options and hashes every recipe of the closure; the same request (a package with the same
        options, for the same build platform) comes again and again, so its plan is kept with the texts of the
        recipes it used. Every spec carries `platform`: it is in the key, and it names the queue of the job.
        """
        cache_key = _plan_key(request, platform)
        cached = self._plans.get(cache_key)
        if cached is not None and all(self._recipe_text(n) == t for n, t in cached.recipe_texts.items()):
            return cached
        requests = [PackageRequest(p.name, p.version, p.options, p.dependency_options) for p in request.packages]
        for item in requests:
            validate_name(item.name)
        used: dict[str, str] = {}

        def get_recipe(name: str) -> Recipe:
            recipe = self.recipe(name)
            used[name] = self._recipes[name][0]
            return recipe

        specs, requested = plan_builds(requests, get_recipe, platform)
        plan = _Plan(specs, requested, used, frozenset(spec.options.get("cpu") for spec in specs))
        self._plans[cache_key] = plan
        if len(self._plans) > _PLAN_CACHE_SIZE:
            self._plans.popitem(last=False)
        return plan

    def _expiring(self, ready: _Ready) -> bool:
        """Whether a kept answer's URLs are past half their lifetime (the embedded farm's never are: no clock read)."""
        return ready.refresh_at != math.inf and self.clock() >= ready.refresh_at

    def _ready_entry(self, info: BuildInfo, artifact: str | None, log: str | None, made_at: float) -> _Ready:
        lifetime = self.blobs.url_lifetime()
        refresh_at = math.inf if lifetime is None else made_at + lifetime / 2
        return _Ready(info, artifact, log, refresh_at)

    def _remember_ready(self, record: BuildRecord) -> _Ready:
        """Keep a ready build's answer for the process's life (bounded, oldest first out)."""
        made_at = self.clock()
        ready = self._ready_entry(self.to_info(record), record.artifact, record.log, made_at)
        self._ready[record.key] = ready
        if len(self._ready) > _READY_CACHE_SIZE:
            self._ready.popitem(last=False)
        return ready

    def _refresh(self, key: str, ready: _Ready) -> _Ready:
        """The kept answer with its URLs made again (presigning is local work: no store is read)."""
        made_at = self.clock()
        info = ready.info.model_copy(
            update={
                "url": self.blobs.url_for(ready.artifact) if ready.artifact else None,
                "log_url": self.blobs.url_for(ready.log) if ready.log else None,
            }
        )
        fresh = self._ready_entry(info, ready.artifact, ready.log, made_at)
        self._ready[key] = fresh
        return fresh

    def _ensure_build(self, spec: BuildSpec, *, retry_failed: bool = False) -> BuildRecord:
        now = self.clock()
        candidate = BuildRecord(
            key=spec.key,
            name=spec.name,
            version=spec.version,
            options=spec.options.as_dict(),
            spec=spec.to_json(),
            dependencies=tuple(key for _, key in spec.dependencies),
            runtime_dependencies=spec.runtime_dependencies,
            platform=str(spec.platform),
            created_at=now,
            updated_at=now,
            enqueued_at=now,
        )
        created, record = self.builds.create_if_absent(candidate)
        if created:
            self._send(record, now)
        elif record.status == BuildStatus.FAILED and retry_failed:
            if self.builds.requeue_failed(spec.key, now):  # one of several concurrent retries sends the job
                self._send(record, now)
            record = self.builds.get(spec.key) or record
        else:
            self._requeue_if_stale(record, now)
        return record

    def _requeue_if_stale(self, record: BuildRecord, now: float) -> bool:
        """The safety net: a build queued longer than `requeue_after` may have no job, so send it again.

        A creator that died between its write and its send, or a worker that died between its fenced finish and
        sending its waiters' jobs, leaves a queued build that nothing will ever send. Resolve and wait both read
        the record anyway, so both check. Duplicate jobs are harmless (the lease lets one worker build); a build
        whose dependencies are still unfinished is registered again as their waiter instead (idempotent), and a
        worker that receives its job early drops it. `mark_enqueued` first restarts the timer, so each stale
        build is looked at about once per `requeue_after`, however many clients poll it. True if a job was sent.
        """
        if record.status != BuildStatus.QUEUED or now - record.enqueued_at <= self.requeue_after:
            return False
        self.builds.mark_enqueued(record.key, now)
        return send_when_dependencies_finish(self.builds, self.queues, record, now)

    def _send(self, record: BuildRecord, now: float) -> None:
        """Send the build's job to its platform's queue now, or, while a dependency is unfinished, leave it as a
        waiter on each such dependency: finishing the last one sends it (no job goes round the queue meanwhile)."""
        send_when_dependencies_finish(self.builds, self.queues, record, now)

    def to_info(self, record: BuildRecord) -> BuildInfo:
        url = None
        if record.status == BuildStatus.READY and record.artifact:
            url = self.blobs.url_for(record.artifact)
        return BuildInfo(
            key=record.key,
            name=record.name,
            version=record.version,
            options=record.options,
            status=record.status,
            dependencies=list(record.dependencies),
            runtime_dependencies=list(record.runtime_dependencies),
            url=url,
            sha256=record.sha256,
            size=record.size,
            # A worker's error message can be any length; the protocol bounds it, so the answer stays valid.
            error=record.error[:MAX_ERROR_LENGTH] if record.error is not None else None,
            log_url=self.blobs.url_for(record.log) if record.log else None,
            attempts=record.attempts,
            last_line=record.last_line[:MAX_LAST_LINE_LENGTH] if record.status == BuildStatus.BUILDING else "",
        )

    def build(self, key: str) -> BuildInfo:
        record = self.builds.get(validate_key(key))
        if record is None:
            raise NotFound(f"no build with key {key}")
        return self.to_info(record)

    def wait(self, keys: list[str], timeout: float, seen: Mapping[str, BuildStatus] | None = None) -> WaitResponse:
        """Block until a key finished, or changed from the status in `seen`, or `timeout` passed."""
        wanted, seen, deadline = self._wait_plan(keys, timeout, seen)
        while (answer := self.wait_step(wanted, seen, deadline)) is None:
            self.sleep(min(self.poll_interval, max(0.0, deadline - self.clock())))
        return answer

    async def wait_async(
        self, keys: list[str], timeout: float, seen: Mapping[str, BuildStatus] | None = None
    ) -> WaitResponse:
        """`wait` for an event loop: sleeping between polls holds no thread, so any number of clients can wait.

        Each poll runs in a worker thread (a short database read); between polls the request costs nothing.
        """
        wanted, seen, deadline = self._wait_plan(keys, timeout, seen)
        while (answer := await asyncio.to_thread(self.wait_step, wanted, seen, deadline)) is None:
            await asyncio.sleep(min(self.poll_interval, max(0.0, deadline - self.clock())))
        return answer

    def _wait_plan(
        self, keys: list[str], timeout: float, seen: Mapping[str, BuildStatus] | None
    ) -> tuple[list[str], Mapping[str, BuildStatus], float]:
        wanted = list(dict.fromkeys(validate_key(k) for k in keys))
        return wanted, seen or {}, self.clock() + min(max(timeout, 0.0), self.max_wait, MAX_WAIT_SECONDS)

    def wait_step(self, wanted: list[str], seen: Mapping[str, BuildStatus], deadline: float) -> WaitResponse | None:
        """One poll of a wait: the answer if a key finished or changed or the deadline passed, else None."""
        records = self.builds.get_many(wanted)
        missing = [k for k in wanted if k not in records]
        if missing:
            raise NotFound(f"no build with key {missing[0]}")
        now = self.clock()
        for record in records.values():
            try:
                self._requeue_if_stale(record, now)  # e.g. a waiter whose dependency's worker died before sending
            except PkgcError as exc:  # a safety net: the answer to the wait matters more than this resend
                log.warning("could not send build %s's job again: %s", record.key, exc)
        finished = [self.to_info(r) for k in wanted if (r := records[k]).status.finished]
        progress = [
            self.to_info(r)
            for k in wanted
            if not (r := records[k]).status.finished and k in seen and seen[k] != r.status
        ]
        if not (finished or progress) and self.clock() >= deadline:
            # Nothing finished: report every pending build as it is now (a watcher's latest log line).
            progress = [self.to_info(records[k]) for k in wanted]
        if finished or progress:
            done = {info.key for info in finished}
            return WaitResponse(finished=finished, pending=[k for k in wanted if k not in done], progress=progress)
        return None

    def build_log(self, key: str) -> bytes:
        record = self.builds.get(validate_key(key))
        if record is None:
            raise NotFound(f"no build with key {key}")
        if not record.log:
            raise NotFound(f"build {key} has no log yet", hint=f"its status is {record.status}")
        data = self.blobs.get_bytes(record.log)
        if data is None:
            raise NotFound(f"log of build {key} is missing")
        return data
