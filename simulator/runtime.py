"""The model as probes and general-ability sets see it: live weights plus the method's runtime.

Weight-editing methods (FT, ROME, MEMIT, ...) change tensors and nothing else, so their view is
the plain model. Parameter-preserving methods answer through something beside the weights: a
hook layer around one module (GRACE's codebook), a text context put before the prompt (IKE's
demonstrations, SERAC's retrieved edit). ``ModelView`` is the one object the scorer calls, so the
scorer never knows which method ran:

    with view.active():                       # hooks installed for the duration of the forwards
        ids = tokenizer(prefix + view.context(prompt) + prompt + target)

A method's runtime (``MethodRuntime``) is built by its editor from the method state of a version
(``Editor.runtime``); the session's view composes the runtimes of the version it holds.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Iterator, Protocol, Sequence


class MethodRuntime(Protocol):
    """What one stateful method adds at inference time."""

    def context(self, prompt: str) -> str:
        """Text to put before ``prompt`` (after the model's own prompt prefix); "" for none."""
        ...

    def active(self) -> ContextManager[None]:
        """Install hooks on the model for the duration of the block (and remove them after)."""
        ...


class ModelView:
    """The plain model: no context, no hooks. Subclasses and the session's view add runtimes."""

    def __init__(self, model, tokenizer, spec: Any = None):
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec

    @property
    def prompt_prefix(self) -> str:
        return (getattr(self.spec, "prompt_prefix", "") or "") if self.spec is not None else ""

    def runtimes(self) -> Sequence[MethodRuntime]:
        return ()

    def context(self, prompt: str) -> str:
        return "".join(r.context(prompt) for r in self.runtimes())

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for r in self.runtimes():
                stack.enter_context(r.active())
            yield


class RuntimeView(ModelView):
    """A view over a fixed list of runtimes (tests, one-off measurements)."""

    def __init__(self, model, tokenizer, spec: Any = None, runtimes: Sequence[MethodRuntime] = ()):
        super().__init__(model, tokenizer, spec)
        self._runtimes = list(runtimes)

    def runtimes(self) -> Sequence[MethodRuntime]:
        return self._runtimes


def as_view(model_or_view, tokenizer=None, spec: Any = None) -> ModelView:
    """A ``ModelView`` as it is, or the plain view of a model."""
    if isinstance(model_or_view, ModelView):
        return model_or_view
    return ModelView(model_or_view, tokenizer, spec)
