"""`editledger reset | revert | branch | log`: move through a run's history. Reset and revert are
ledger operations (no model needed); branch replays new steps, so it loads the model."""
from __future__ import annotations

from ledger.errors import InputError

from .common import add_model_args, bounded_int, find_run, open_ledger, parse_run_at, printable


def register(sub) -> None:
    p = sub.add_parser("reset", help="move a run's head back to an earlier step (history kept)")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--to", type=bounded_int(0, 10**9 - 1, "a step"), required=True, metavar="STEP",
                   help="the step to move the head to (0 = start)")
    p.set_defaults(func=reset)

    p = sub.add_parser("revert", help="make a new version without one step's delta")
    p.add_argument("run", metavar="RUN")
    p.add_argument("step", type=bounded_int(1, 10**9 - 1, "a step"), metavar="STEP")
    p.set_defaults(func=revert)

    p = sub.add_parser("branch", help="continue from an earlier version with other steps, as a new run")
    p.add_argument("ref", metavar="RUN@STEP")
    p.add_argument("stream", metavar="STREAM", help="stream file with the steps to replay from there")
    p.add_argument("--name", help="a label for the new run")
    p.add_argument("--model", default=None, help="the base model, if it is not where the run found it")
    add_model_args(p)
    p.set_defaults(func=branch)

    p = sub.add_parser("log", help="show a run's version history like `git log --graph`")
    p.add_argument("run", metavar="RUN")
    p.set_defaults(func=log)


def reset(args) -> int:
    from ledger.history import reset as do_reset
    with open_ledger(args, create=False) as led:
        run_id = find_run(led, args.run)
        v = do_reset(led, run_id, args.to)
        print(f"run {run_id}: head reset to step {args.to} (marker version {v.id}); later versions are kept")
    return 0


def revert(args) -> int:
    from ledger.history import revert as do_revert
    with open_ledger(args, create=False) as led:
        run_id = find_run(led, args.run)
        v = do_revert(led, run_id, args.step)
        print(f"run {run_id}: version {v.id} reverts step {args.step} ({printable(v.note or '')}); "
              f"materialise it with `editledger checkout {run_id}@{v.step}`")
    return 0


def branch(args) -> int:
    from simulator.replay import ReplayOptions, Replayer
    from ledger.history import version_at
    from simulator.session import Session
    from simulator.streams import load_stream
    stream = load_stream(args.stream)
    with open_ledger(args, create=False) as led:
        run_id, step = parse_run_at(led, args.ref)
        if step is None:
            raise InputError(f"branch needs RUN@STEP, e.g. {run_id}@5")
        origin = version_at(led, run_id, step)
        parent = led.run(run_id)
        opts = ReplayOptions.from_config((parent.config or {}).get("options", {}))
        s = Session.for_run(led, run_id, device=args.device, model=args.model)
        s.checkout(origin.id)
        new_id = Replayer(s, opts).start(
            stream.steps, stream_name=stream.name, stream_digest=stream.digest, stream_kind=stream.kind,
            name=args.name, start_version_id=origin.id, first_step=step + 1,
            extra_config={"branched_from": {"run": run_id, "step": step, "version": origin.id},
                          "stream_path": str(args.stream)})
        print(f"run {new_id} branches from run {run_id} at step {step}: {led.run(new_id).status}, "
              f"{led.run(new_id).step_count} steps")
    return 0


def log(args) -> int:
    with open_ledger(args, create=False) as led:
        run_id = find_run(led, args.run)
        print(render_log(led, run_id))
    return 0


def render_log(led, run_id: int) -> str:
    """The run's versions newest first; '*' marks the head's lineage, '|' other history."""
    run = led.run(run_id)
    on_head = {v.id for v in led.lineage(run.head_version_id)}
    lines = []
    for v in reversed(led.versions(run_id)):
        mark = "*" if v.id in on_head else "|"
        head = " (HEAD)" if v.id == run.head_version_id else ""
        reqs = led.edit_requests(v.id)
        what = "; ".join(f"{r.subject}: {(r.target_old or '?').strip()} → {r.target_new.strip()}" for r in reqs)
        parent = f" parent {v.parent_id}" if v.parent_id is not None else ""
        lines.append(printable(f"{mark} v{v.id} step {v.step} [{v.kind}]{head}{parent}  {what or v.note or ''}".rstrip()))
    start = led.version(run.start_version_id)
    lines.append(f"o v{start.id} step {start.step} [{start.kind}] start of run {run_id}")
    return "\n".join(lines)
