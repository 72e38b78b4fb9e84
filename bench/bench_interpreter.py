"""Interpreter throughput: scenario runs per second on the in-memory channel, one core, against
the same calls hand-coded as plain coroutines in the same run.

Audio rendering is cached (prompts pre-rendered before timing), the heard-audio capture is off,
and every run is a whole call: greeting, gather with keys, check, goodbye, finish, hang-up.
The target (issue 3) is ≥ 2,000 type C runs/s on one core, so that the interpreter is never what
limits call volume.

The peer is what a programmer would write without the scenario language: one ``async def`` per
scenario that makes exactly the same channel calls on the same ``SimulatedChannel`` (the same
prompts rendered the same way, the same collect specs, the same constant-time comparison) and
keeps a minimal timeline (one tuple per event the interpreter records). The channel, the media
look-ups and the clock are shared, so the ratio is the cost of the interpreter itself: the step
graph, the call context, variables and secrets, templating, timeline events and the result.
The two take turns, so a change of load on the machine hits both.

    .venv/bin/python bench/bench_interpreter.py [--runs 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import machine, result  # noqa: E402

from ars_engine.media.clip import PromptAudio  # noqa: E402
from ars_engine.media.library import MediaLibrary  # noqa: E402
from ars_engine.scenario.interpreter import Interpreter  # noqa: E402
from ars_engine.scenario.loader import load_scenario  # noqa: E402
from ars_engine.telephony.channel import CollectEnd, CollectSpec  # noqa: E402
from ars_engine.telephony.simulated import KeyScript, SimulatedChannel  # noqa: E402

COMPANY = "에이알에스"  # the scenarios' default
Timeline = list[tuple[int, str, dict[str, Any]]]


# -- the peer: the same calls written by hand ------------------------------------------------------

class HandCoded:
    """type_c and type_a as plain coroutines over a Channel (what the YAML says, by hand)."""

    def __init__(self, media: MediaLibrary) -> None:
        self.media = media
        # static prompts rendered once, as the interpreter's prerender() does
        s = self.static
        self.enter_code, self.wrong_code, self.no_input = (
            s("c_enter_code"), s("c_wrong_code"), s("no_input"))
        self.retry_guide, self.success = s("retry_guide"), s("auth_success", "goodbye")
        self.failed, self.timeout_end = s("auth_failed", "goodbye"), s("timeout_end", "goodbye")
        self.repeat_offer, self.repeat_notice = s("a_repeat_offer"), s("repeat_notice")
        self.closing = s("enter_on_web", "goodbye")
        self.code_spec = CollectSpec(6, 6, "#", 10.0, 5.0, 40.0)
        self.repeat_spec = CollectSpec(1, 1, "#", 4.0, 3.0, 15.0)

    def static(self, *ids: str) -> PromptAudio:
        catalogue = self.media.catalogue
        return PromptAudio(" ".join(catalogue.text(i) for i in ids),
                           tuple(self.media.prompt(i) for i in ids), ids)

    def greeting(self, intro: str) -> PromptAudio:
        text = f"안녕하세요. {COMPANY} 본인확인 서비스입니다."  # a variable: rendered per call
        return PromptAudio(f"{text} {self.media.catalogue.text(intro)}",
                           (self.media.tts(text), self.media.prompt(intro)), (intro,))

    @staticmethod
    async def play(channel: SimulatedChannel, timeline: Timeline, prompt: PromptAudio,
                   barge_in: bool = False) -> None:
        timeline.append((int(channel.now() * 1000), "prompt_started",
                         {"text": prompt.text, "duration_ms": prompt.duration_ms}))
        played = await channel.play(prompt, barge_in=barge_in)
        timeline.append((int(channel.now() * 1000), "prompt_ended",
                         {"played_ms": played.played_ms, "interrupted": played.interrupted}))

    async def gather(self, channel: SimulatedChannel, timeline: Timeline, prompt: PromptAudio,
                     spec: CollectSpec) -> str:
        await self.play(channel, timeline, prompt, barge_in=True)
        got = await channel.collect(spec)
        for t_ms in got.key_times_ms:
            timeline.append((t_ms, "key", {"key": "*"}))
        timeline.append((int(channel.now() * 1000), "gather_ended",
                         {"digits": len(got.digits), "end": got.end.value}))
        return got.digits if got.end is not CollectEnd.FIRST_DIGIT_TIMEOUT or got.digits else ""

    async def type_c(self, channel: SimulatedChannel, code: str) -> tuple[str, Timeline]:
        timeline: Timeline = []
        await self.play(channel, timeline, self.greeting("c_intro"))
        reason = "wrong_code"
        for attempt in range(3):
            if attempt:
                timeline.append((int(channel.now() * 1000), "retry", {"attempt": attempt}))
                await self.play(channel, timeline, self.retry_guide)
            entered = await self.gather(channel, timeline, self.enter_code, self.code_spec)
            if not entered:
                reason = "no_input"
                await self.play(channel, timeline, self.no_input)
                continue
            ok = len(entered) == 6 and hmac.compare_digest(entered.encode(), code.encode())
            timeline.append((int(channel.now() * 1000), "check", {"passed": ok}))
            if ok:
                await self.play(channel, timeline, self.success)
                return await self.finish(channel, timeline, "success")
            reason = "wrong_code"
            await self.play(channel, timeline, self.wrong_code)
        timeline.append((int(channel.now() * 1000), "retry", {"attempt": 3, "exhausted": True}))
        timeline.append((int(channel.now() * 1000), "branch", {"reason": reason}))
        if reason == "no_input":
            await self.play(channel, timeline, self.timeout_end)
            return await self.finish(channel, timeline, "timeout")
        await self.play(channel, timeline, self.failed)
        return await self.finish(channel, timeline, "failed")

    async def type_a(self, channel: SimulatedChannel, code: str) -> tuple[str, Timeline]:
        timeline: Timeline = []
        await self.play(channel, timeline, self.greeting("a_intro"))
        for attempt in range(3):
            if attempt:
                await self.play(channel, timeline, self.repeat_notice)
            media = self.media
            await self.play(channel, timeline, PromptAudio(
                f"{media.catalogue.text('code_is')} **** {media.catalogue.text('suffix_imnida')}",
                (media.prompt("code_is"), *media.digits(code), media.prompt("suffix_imnida")),
                ("code_is", "suffix_imnida")))
            if await self.gather(channel, timeline, self.repeat_offer,
                                 self.repeat_spec) != "1":
                break
        await self.play(channel, timeline, self.closing)
        return await self.finish(channel, timeline, "success")

    @staticmethod
    async def finish(channel: SimulatedChannel, timeline: Timeline, outcome: str
                     ) -> tuple[str, Timeline]:
        timeline.append((int(channel.now() * 1000), "finished", {"outcome": outcome}))
        await channel.hangup()
        timeline.append((int(channel.now() * 1000), "hangup", {"by": "engine"}))
        return outcome, timeline


CASES = [
    # (label, scenario file, params, keys, expected outcome)
    ("type C, right code", "type_c.yaml", {"code": "123456"}, ["123456"], "success"),
    ("type C, wrong code x3", "type_c.yaml", {"code": "123456"},
     ["111111", "222222", "333333"], "failed"),
    ("type A, read code", "type_a.yaml", {"code": "1234"}, [""], "success"),
]

Runner = Callable[[SimulatedChannel, int], Awaitable[tuple[str, int]]]


async def measure(run: Runner, keys: list[str], runs: int, expected: str) -> tuple[float, int]:
    """Seconds for ``runs`` calls on fresh SimulatedChannels, and events recorded in all."""
    script = KeyScript.parse(keys)
    events = 0
    start = time.perf_counter()
    for i in range(runs):
        channel = SimulatedChannel(KeyScript(list(script.cues)), call_id=f"b{i}",
                                   capture_audio=False)
        outcome, recorded = await run(channel, i)
        if outcome != expected:
            raise SystemExit(f"run {i}: outcome {outcome}, expected {expected}")
        events += recorded
    return time.perf_counter() - start, events


def runners(name: str, params: dict[str, str], media: MediaLibrary, hand: HandCoded
            ) -> tuple[Runner, Runner, Interpreter]:
    scenario = load_scenario(ROOT / "scenarios" / name, prompts=media.catalogue)
    interpreter = Interpreter(scenario, media)
    code = params["code"]
    by_hand = hand.type_c if name == "type_c.yaml" else hand.type_a

    async def ours(channel: SimulatedChannel, i: int) -> tuple[str, int]:
        r = await interpreter.run(channel, params, call_id=f"b{i}")
        return r.outcome, len(r.timeline)

    async def peer(channel: SimulatedChannel, i: int) -> tuple[str, int]:
        outcome, timeline = await by_hand(channel, code)
        return outcome, len(timeline)

    return ours, peer, interpreter


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=5000, help="runs per repetition")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median reported)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    media = MediaLibrary.default(ROOT)
    report = media.render_all()
    hand = HandCoded(media)
    print(f"# interpreter benchmark  {time.strftime('%Y-%m-%d')}  {machine()}  pinned to 1 core")
    print(f"# prompts ready: {report.total} ({report.rendered} rendered now); peer: the same "
          "calls hand-coded as coroutines, same channel, taking turns")
    print(f"{'case':<24} {'runs/s (median)':>16} {'min':>8} {'max':>8} {'µs/run':>8} "
          f"{'steps':>6} {'events':>7} {'hand-coded runs/s':>18} {'µs/run':>7} {'ratio':>6}")
    headline: tuple[float, float] | None = None
    for label, name, params, keys, expected in CASES:
        ours, peer, interpreter = runners(name, params, media, hand)
        asyncio.run(measure(ours, keys, 200, expected))  # warm-up
        asyncio.run(measure(peer, keys, 200, expected))
        ours_rates, peer_rates = [], []
        events = peer_events = 0
        for _ in range(args.repeat):
            seconds, events = asyncio.run(measure(ours, keys, args.runs, expected))
            ours_rates.append(args.runs / seconds)
            seconds, peer_events = asyncio.run(measure(peer, keys, args.runs, expected))
            peer_rates.append(args.runs / seconds)
        probe = SimulatedChannel(KeyScript.parse(keys), capture_audio=False)
        steps = asyncio.run(interpreter.run(probe, params)).steps
        if events != peer_events:
            raise SystemExit(f"{label}: the hand-coded call recorded {peer_events / args.runs} "
                             f"events per run, the interpreter {events / args.runs}")
        o, p = statistics.median(ours_rates), statistics.median(peer_rates)
        print(f"{label:<24} {o:>16,.0f} {min(ours_rates):>8,.0f} {max(ours_rates):>8,.0f} "
              f"{1e6 / o:>8.0f} {steps:>6} {events / args.runs:>7.0f} {p:>18,.0f} "
              f"{1e6 / p:>7.0f} {o / p:>6.2f}", flush=True)
        if headline is None:
            headline = (o, p)
    assert headline is not None
    result("interpreter_type_c", headline[0], "runs/s", "hand-coded coroutine", headline[1],
           better="higher", ours_note=f"{1e6 / headline[0]:.0f} µs/run",
           peer_note=f"{1e6 / headline[1]:.0f} µs/run")


if __name__ == "__main__":
    main()
