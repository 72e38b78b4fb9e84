"""``ars-engine``: validate, simulate, prompts render, hash-secret, demo."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .config import Settings
from .errors import ArsError, ParameterError, ScenarioInvalid

if TYPE_CHECKING:
    from .media.library import MediaLibrary
    from .scenario.model import Scenario
    from .scenario.timeline import CallResult
    from .telephony.embedded import SipSettings


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ArsError as exc:
        raise click.ClickException(str(exc)) from exc


def _media(settings: Settings, online: bool | None = None) -> MediaLibrary:
    from .media.library import MediaLibrary

    try:
        return MediaLibrary.default(settings.root, online=settings.tts_online if online is None
                                    else online, cache_dir=settings.media_cache)
    except ArsError as exc:
        raise click.ClickException(f"cannot load the prompt catalogue: {exc}") from exc


@click.group()
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False))
def main(log_level: str) -> None:
    """ars-engine: an outbound ARS telephony engine (YAML DTMF scenarios, Korean prompts)."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Validate scenario files; print every problem as file:line:column and exit 1 if any."""
    from .media.catalogue import Catalogue
    from .scenario.loader import load_scenario

    settings = _settings()
    try:
        catalogue = Catalogue.load(settings.root / "prompts" / "ko.yaml")
    except ArsError as exc:
        raise click.ClickException(f"cannot load the prompt catalogue: {exc}") from exc
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    if not files:
        raise click.ClickException(f"no scenario files (*.yaml) in {', '.join(map(str, paths))}")
    errors = 0
    for path in files:
        try:
            scenario = load_scenario(path, prompts=catalogue)
        except ScenarioInvalid as exc:
            errors += len(exc.errors)
            for err in exc.errors:
                click.echo(str(err))
            continue
        click.echo(f"{path}: ok ({scenario.name}, {len(scenario.steps)} steps)")
    if errors:
        click.echo(f"{errors} problem(s) in {len(files)} file(s)", err=True)
        sys.exit(1)


@main.command()
@click.argument("scenario_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="A scenario parameter (repeatable).")
@click.option("--keys", "-k", "keys", multiple=True, metavar="CUE",
              help="Keys the callee types, in order: KEYS at the next gather ('' = silence), "
                   "@SECONDS=KEYS at an offset, after:PROMPT_ID=KEYS after a prompt ended.")
@click.option("--hangup-at", type=float, default=None, help="The callee hangs up at SECONDS.")
@click.option("--wav", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write what the callee heard (default recordings/sim/…).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def simulate(scenario_path: Path, params: tuple[str, ...], keys: tuple[str, ...],
             hangup_at: float | None, wav: Path | None, as_json: bool) -> None:
    """Run a scenario without a phone and print its timeline."""
    from .scenario.corehttp import AiohttpCoreClient
    from .scenario.interpreter import Interpreter
    from .telephony.simulated import KeyScript, SimulatedChannel

    settings = _settings()
    media = _media(settings)
    scenario = _load_or_exit(scenario_path, media)
    given = _parse_params(params)
    try:
        script = KeyScript.parse(list(keys), hangup_at)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keys") from exc
    call_id = "sim-" + uuid.uuid4().hex[:8]
    rec_dir = settings.recordings_dir / "sim"
    channel = SimulatedChannel(script, call_id=call_id, recordings_dir=rec_dir)

    async def run() -> CallResult:
        core = AiohttpCoreClient(signing_secret=settings.core_signing_secret)
        try:
            return await Interpreter(scenario, media, core=core).run(channel, given,
                                                                     call_id=call_id)
        finally:
            await core.close()

    try:
        result = asyncio.run(run())
    except ParameterError as exc:
        raise click.ClickException(str(exc)) from exc
    wav = wav or rec_dir / f"{scenario.name}-{call_id}.wav"
    channel.write_heard_wav(wav)
    if as_json:
        click.echo(json.dumps({**result.as_dict(), "heard_wav": str(wav)}, ensure_ascii=False,
                              indent=2))
    else:
        click.echo(f"{scenario.name}: {scenario.title}")
        click.echo(result.describe())
        click.echo(f"heard: {wav}")
        for path in result.recordings:
            click.echo(f"recording: {path}")


@main.command()
@click.argument("target")
@click.option("--scenario", "scenario_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE")
@click.option("--config", "config_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="TOML config file (default: $ARS_CONFIG); see docs/configuration.md.")
@click.option("--trunk", default=None, help="Trunk name from the config file.")
@click.option("--bind", default=None, metavar="HOST[:PORT]",
              help="Local SIP/RTP address [config [sip] bind, else 127.0.0.1, any free port].")
@click.option("--port", default=None, type=int, help="Local SIP port (0: any free port).")
@click.option("--proxy", default=None, metavar="HOST:PORT",
              help="Outbound proxy (trunk), registrar-less [config: the trunk's proxy].")
@click.option("--answer-timeout", default=None, type=float,
              help="Seconds of ringing before CANCEL [config, else 30].")
@click.option("--backend", type=click.Choice(["embedded", "asterisk"]), default="embedded",
              show_default=True,
              help="embedded: our own SIP/RTP; asterisk: originate over AMI, run over FastAGI.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def call(target: str, scenario_path: Path, params: tuple[str, ...], config_path: Path | None,
         trunk: str | None, bind: str | None, port: int | None, proxy: str | None,
         answer_timeout: float | None, backend: str, as_json: bool) -> None:
    """Place one real call to TARGET and run a scenario on it.

    Embedded backend: TARGET is a SIP URI (sip:user@host:port); trunk settings come from the
    config file (--config or ARS_CONFIG: proxy, credentials, codecs); flags override them.
    ARS_SIP_USERNAME / ARS_SIP_PASSWORD, when set, override the trunk's credentials.

    Asterisk backend: TARGET goes into the config's [asterisk] dial template (a number for
    "PJSIP/{target}@carrier", or a dial string such as PJSIP/softphone); the AMI secret comes
    from [asterisk] ami_secret_env / ami_secret_file or ARS_AMI_SECRET.
    """
    from .scenario.corehttp import AiohttpCoreClient
    from .scenario.interpreter import Interpreter

    settings = _settings()
    if config_path is not None:
        settings = _with_config_file(settings, config_path)
    make_backend = _asterisk_backend(settings, answer_timeout) if backend == "asterisk" else \
        _embedded_backend(settings, trunk, bind, port, proxy, answer_timeout)
    media = _media(settings)
    scenario = _load_or_exit(scenario_path, media)
    given = _parse_params(params)
    try:
        scenario.bind_params(given)  # refuse bad parameters before dialing anyone
    except ParameterError as exc:
        raise click.ClickException(str(exc)) from exc

    async def run() -> tuple[dict[str, object], CallResult | None]:
        core = AiohttpCoreClient(signing_secret=settings.core_signing_secret)
        try:
            async with make_backend() as placer:
                attempt = await placer.dial(target)
                out: dict[str, object] = {"target": target, "backend": backend,
                                          "outcome": attempt.outcome.value,
                                          "sip_status": attempt.status,
                                          "cause": attempt.cause, "reason": attempt.reason}
                if attempt.channel is None:
                    return out, None
                try:
                    result = await Interpreter(scenario, media, core=core).run(
                        attempt.channel, given)
                finally:
                    await attempt.channel.close()
                return out, result
        finally:
            await core.close()

    try:
        out, result = asyncio.run(run())
    except ArsError as exc:  # AMI login refused, AGI port taken, trunk config…
        raise click.ClickException(str(exc)) from exc
    if as_json:
        payload = {**out, "scenario": result.as_dict() if result else None}
        click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    status = f"SIP {out['sip_status']}" if backend == "embedded" else f"cause {out['cause']}"
    click.echo(f"{target}: {out['outcome']} ({status}, {out['reason']})")
    if result is not None:
        click.echo(result.describe())


def _with_config_file(settings: Settings, path: Path) -> Settings:
    import dataclasses

    from .config import load_file_config

    try:
        file_config = load_file_config(path)
    except ArsError as exc:
        raise click.ClickException(str(exc)) from exc
    import os

    from .config import _service_from_env

    service = _service_from_env(file_config.service, dict(os.environ), settings.root)
    return dataclasses.replace(settings, sip=file_config.sip, asterisk=file_config.asterisk,
                               service=service, config_file=path)


def _embedded_backend(settings: Settings, trunk: str | None, bind: str | None,
                      port: int | None, proxy: str | None,
                      answer_timeout: float | None) -> Callable[[], Any]:
    from .telephony.embedded import EmbeddedBackend

    sip = _sip_settings(settings, trunk, bind, port, proxy, answer_timeout)
    return lambda: EmbeddedBackend(sip, settings.recordings_dir / "calls")


def _asterisk_backend(settings: Settings, answer_timeout: float | None
                      ) -> Callable[[], Any]:
    """The Asterisk backend from the config's [asterisk] table (and ARS_AMI_* variables)."""
    import os

    from .telephony.ami.client import AmiSettings
    from .telephony.asterisk import AsteriskBackend, AsteriskSettings

    a = settings.asterisk
    secret = os.environ.get("ARS_AMI_SECRET") or a.ami_secret
    if not secret:
        where = f"{settings.config_file}: " if settings.config_file else ""
        raise click.ClickException(
            f"{where}the Asterisk backend needs the AMI secret: set [asterisk] ami_secret_env "
            "(or ami_secret_file) in the config file, or ARS_AMI_SECRET")
    try:
        ami = AmiSettings(host=a.ami_host, port=a.ami_port,
                          username=os.environ.get("ARS_AMI_USERNAME") or a.ami_username,
                          secret=secret, auth=a.ami_auth)  # type: ignore[arg-type]
    except ArsError as exc:
        raise click.ClickException(str(exc)) from exc
    ast = AsteriskSettings(
        ami=ami, sounds_dir=a.sounds_dir or settings.recordings_dir / "asterisk-sounds",
        agi_host=a.agi_host, agi_port=a.agi_port, agi_allowed_hosts=a.agi_allowed_hosts,
        context=a.context, dial=a.dial, recordings_dir=settings.recordings_dir / "calls",
        answer_timeout=a.answer_timeout if answer_timeout is None else answer_timeout)
    return lambda: AsteriskBackend(ast)


def _sip_settings(settings: Settings, trunk_name: str | None,
                  bind: str | None, port: int | None, proxy: str | None,
                  answer_timeout: float | None) -> SipSettings:
    """The embedded backend's settings: the config file's [sip] and trunk, then the flags."""
    import os

    from .config import split_host_port
    from .telephony.embedded import SipSettings

    try:
        sip = settings.sip
        trunk = sip.trunk(trunk_name)
    except ArsError as exc:
        raise click.ClickException(str(exc)) from exc
    host, bind_port = sip.bind_host, sip.bind_port
    if bind:
        try:
            host, given_port = split_host_port(bind)
        except ValueError:
            raise click.BadParameter("expected HOST[:PORT]", param_hint="--bind") from None
        bind_port = bind_port if given_port is None else given_port
    proxy_addr = trunk.proxy
    if proxy:
        try:
            proxy_host, proxy_port = split_host_port(proxy)
        except ValueError:
            proxy_port = None
        if not proxy_port:
            raise click.BadParameter("expected HOST:PORT", param_hint="--proxy")
        proxy_addr = (proxy_host, proxy_port)
    return SipSettings(
        host=host, port=bind_port if port is None else port, media_host=sip.media_host,
        proxy=proxy_addr, from_user=trunk.from_user,
        username=os.environ.get("ARS_SIP_USERNAME") or trunk.username,
        password=os.environ.get("ARS_SIP_PASSWORD") or trunk.password,
        answer_timeout=trunk.answer_timeout if answer_timeout is None else answer_timeout,
        codecs=trunk.codecs, t1=sip.t1, keepalive=trunk.keepalive)


def _load_or_exit(path: Path, media: MediaLibrary) -> Scenario:
    """The scenario at ``path``, or its problems on stderr and exit status 1."""
    from .scenario.loader import load_scenario

    try:
        return load_scenario(path, prompts=media.catalogue)
    except ScenarioInvalid as exc:
        for err in exc.errors:
            click.echo(str(err), err=True)
        sys.exit(1)


def _parse_params(params: tuple[str, ...]) -> dict[str, str]:
    given: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"'{name}' is not NAME=VALUE", param_hint="--param")
        given[name.strip()] = value
    return given


@main.group()
def prompts() -> None:
    """The prompt catalogue."""


@prompts.command("render")
@click.option("--online/--offline", default=None,
              help="Use gTTS (falls back to espeak-ng); default from ARS_TTS_ONLINE.")
def prompts_render(online: bool | None) -> None:
    """Pre-render every catalogue prompt and digit/amount clip into the cache."""
    settings = _settings()
    media = _media(settings, online)
    total = len(list(media.catalogue.ids())) + len(list(media.clips.ids()))
    with click.progressbar(length=total, label="rendering prompts", file=sys.stderr,
                           show_pos=True, item_show_func=lambda s: s or "") as bar:
        state = {"done": 0}

        def progress(done: int, _total: int, current: str) -> None:
            bar.current_item = current
            bar.update(done - state["done"])
            state["done"] = done

        report = media.render_all(progress)
    click.echo(f"{report.total} prompts and clips: {report.rendered} rendered, {report.cached} "
               f"from cache, {report.recorded} from recorded files, {len(report.failed)} failed "
               f"({report.seconds:.1f} s); cache: {media.cache_dir}")
    for prompt_id, error in report.failed:
        click.echo(f"failed: {prompt_id}: {error}", err=True)
    if report.failed:
        sys.exit(1)


@main.command("hash-secret")
@click.option("--salt", default=None, help="Salt (default: random).")
@click.option("--scheme", type=click.Choice(["sha256", "pbkdf2_sha256"]), default="sha256",
              show_default=True)
def hash_secret(salt: str | None, scheme: str) -> None:
    """Read a value from standard input and print its salted hash (for hash parameters)."""
    from .scenario.secrets import make_hash

    value = sys.stdin.readline().strip()
    if not value:
        raise click.ClickException("no value on standard input")
    click.echo(make_hash(value, salt, scheme=scheme))


@main.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the heard WAVs (default recordings/demo).")
@click.option("--calls", "real_calls", is_flag=True,
              help="Real SIP/RTP calls on loopback to the QA softphone instead of simulations.")
@click.option("--http", "over_http", is_flag=True,
              help="The whole service: the engine's API, a demo tenant, the seven scenarios "
                   "triggered over HTTP, signed webhooks received by a demo receiver.")
def demo(out: Path | None, real_calls: bool, over_http: bool) -> None:
    """Simulate every shipped scenario on its passing and failing paths; print a summary."""
    settings = _settings()
    if over_http:
        import dataclasses
        import shutil

        from .demo_http import run_demo_http

        folder = out or settings.recordings_dir / "demo-http"
        shutil.rmtree(folder, ignore_errors=True)  # a fresh database and key for each run
        settings = dataclasses.replace(settings, service=dataclasses.replace(
            settings.service, data_dir=folder / "var", database=None, secret_key=None))
        ok = run_demo_http(settings, _media(settings), folder)
    elif real_calls:
        from .demo_calls import run_demo_calls

        ok = run_demo_calls(settings, _media(settings),
                            out or settings.recordings_dir / "demo-calls")
    else:
        from .demo import run_demo

        ok = run_demo(settings, _media(settings), out or settings.recordings_dir / "demo")
    sys.exit(0 if ok else 1)


@main.command()
@click.option("--listen", default="127.0.0.1:5080", show_default=True, metavar="HOST:PORT",
              help="SIP address to answer on (RTP uses the same host).")
@click.option("--rings", default=0, show_default=True, type=click.IntRange(min=0),
              help="Send 180 and ring this many times (--ring-seconds each) before answering.")
@click.option("--ring-seconds", default=1.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--mode", type=click.Choice(["answer", "busy", "reject", "never"]),
              default="answer", show_default=True,
              help="answer, 486 busy, 603 reject, or ring until the caller cancels.")
@click.option("--keys", "keys", multiple=True, metavar="CUE",
              help="KEYS (typed after the next prompt ends) or @SECONDS=KEYS (after the answer).")
@click.option("--dtmf", type=click.Choice(["rfc4733", "inband"]), default="rfc4733",
              show_default=True)
@click.option("--no-telephone-event", is_flag=True,
              help="Answer without RFC 4733 in the SDP (the caller must detect in-band tones).")
@click.option("--hangup-after", default=None, type=click.FloatRange(min=0), metavar="S",
              help="Hang up (BYE) S seconds after answering.")
@click.option("--calls", default=None, type=click.IntRange(min=1),
              help="Exit after N calls (default: run until Ctrl-C).")
@click.option("--recordings", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for <call-id>-heard.wav (default recordings/softphone).")
@click.option("--mask-keys", is_flag=True, help="Show the keys sent as * in the timeline.")
def softphone(listen: str, rings: int, ring_seconds: float, mode: str, keys: tuple[str, ...],
              dtmf: str, no_telephone_event: bool, hangup_after: float | None,
              calls: int | None, recordings: Path | None, mask_keys: bool) -> None:
    """QA softphone: answer calls as told, press keys on cue, print one JSON line per call."""
    from .qa.softphone import Softphone, SoftphoneBehaviour, parse_cues

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT", param_hint="--listen")
    try:
        behaviour = SoftphoneBehaviour(
            mode=mode, rings=rings, ring_seconds=ring_seconds,  # type: ignore[arg-type]
            keys=parse_cues(keys), dtmf=dtmf,  # type: ignore[arg-type]
            hangup_after=hangup_after, telephone_event=not no_telephone_event,
            mask_keys=mask_keys)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--keys") from exc
    out = recordings or _settings().recordings_dir / "softphone"

    async def run() -> None:
        async with Softphone((host.strip("[]"), int(port)), behaviour, out) as phone:
            h, p = phone.address
            click.echo(f"softphone listening on sip:qa@{h}:{p} ({mode})", err=True)
            done = 0
            while calls is None or done < calls:
                report = await phone.reports.get()
                click.echo(json.dumps(report, ensure_ascii=False))
                done += 1

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def _register_service_commands() -> None:
    from .cli_console import alerts, operators
    from .cli_evidence import evidence
    from .cli_service import db, nodes, serve, tenants

    for command in (serve, tenants, db, nodes, evidence, operators, alerts):
        main.add_command(command)


_register_service_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
