"""The Jinja sandbox templates run in, with limits on output size and CPU time.

Pure: no I/O. :class:`LimitedSandbox` is Jinja's :class:`~jinja2.sandbox.SandboxedEnvironment`
plus guards against operations that allocate huge results in C (checked before they run);
:class:`Deadline` stops a render after a number of seconds of thread CPU time (read from
:func:`time.thread_time`); :func:`guard_filter` wraps a filter with the same size checks.
Loading templates is not done here: the environment gets the loader it is given.
"""

from __future__ import annotations

import functools
import math
import re
import string
import sys
import time
from typing import Any, Callable

from jinja2.runtime import Namespace
from jinja2.sandbox import SandboxedEnvironment, SecurityError, modifies_known_mutable

__all__ = ["Deadline", "LimitedSandbox", "RenderLimitError", "guard_filter"]


class RenderLimitError(Exception):
    """A render was stopped because it ran too long or produced too much."""


_AMPLIFYING_STR_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


class LimitedSandbox(SandboxedEnvironment):
    """The Jinja sandbox plus guards against operations that allocate huge results in C.

    The CPU deadline (see :class:`Deadline`) cannot interrupt a single C-level operation,
    such as ``'x' * 10**9`` or ``'x'|center(10**9)``, so those are checked before they run:
    string/list repetition and concatenation, ``**`` with big exponents, ``%`` and
    ``str.format`` widths, padding methods and filters, ``replace``/``join``, strings passed to
    calls and stored in ``namespace()`` objects. Built-in lists, dicts and sets cannot be
    modified (as in ``ImmutableSandboxedEnvironment``) and ``lipsum`` is not available.
    """

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *args: Any, max_output: int = 65536, **kwargs: Any) -> None:
        self.max_output = max_output
        super().__init__(*args, **kwargs)
        self.globals.pop("lipsum", None)
        self.globals["namespace"] = self._namespace_class()

    # -- helpers
    def _too_big(self, what: str) -> SecurityError:
        return SecurityError(f"{what} would exceed the output limit of {self.max_output} characters")

    def _check_len(self, value: Any, what: str = "value") -> Any:
        if isinstance(value, (str, bytes, list, tuple)) and len(value) > self.max_output:
            raise self._too_big(what)
        return value

    def _check_int(self, value: Any, what: str) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > self.max_output:
            raise self._too_big(what)

    def _namespace_class(self) -> type:
        check = self._check_len

        class LimitedNamespace(Namespace):
            def __setitem__(self, name: str, value: Any) -> None:
                check(value, "namespace value")
                Namespace.__setitem__(self, name, value)

        return LimitedNamespace

    # -- sandbox hooks
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        return not modifies_known_mutable(obj, attr)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if len(seq) * max(n, 0) > self.max_output:
                        raise self._too_big("repetition")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                if len(left) + len(right) > self.max_output:
                    raise self._too_big("concatenation")
        elif operator == "**":
            if isinstance(right, (int, float)) and isinstance(left, (int, float)):
                if abs(left) > 1 and right > 0:

                    if right * math.log2(abs(left)) > 4096:
                        raise SecurityError("power result too large")
        elif operator == "%" and isinstance(left, str):
            self._check_percent(left, right)
        rv = super().call_binop(context, operator, left, right)
        return self._check_len(rv, "result")

    def _check_percent(self, fmt: str, args: Any) -> None:
        star = False
        for m in _PERCENT_SPEC.finditer(fmt):
            for part in m.groups():
                if part == "*":
                    star = True
                elif part:
                    self._check_int(int(part), "format width")
        if star:
            for a in args if isinstance(args, tuple) else (args,):
                self._check_int(a, "format width")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        fmt = super().wrap_str_format(value)
        if fmt is None:
            return None
        source = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            nested = False
            for _lit, _field, spec, _conv in string.Formatter().parse(source):
                if spec:
                    nested = nested or "{" in spec
                    for num in re.findall(r"\d+", spec):
                        self._check_int(int(num), "format width")
            if nested:
                for a in (*args, *kwargs.values()):
                    self._check_int(a, "format width")
            return self._check_len(fmt(*args, **kwargs), "format result")

        return functools.update_wrapper(checked, fmt)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        for a in (*args, *kwargs.values()):
            __self._check_len(a, "argument")
        target = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(target, str):
            if name in _AMPLIFYING_STR_METHODS:
                for a in (*args, *kwargs.values()):
                    __self._check_int(a, f"str.{name}() width")
            elif name == "replace" and len(args) >= 2:
                old, new = str(args[0]), str(args[1])
                worst = len(target) + (len(target) + 1) * max(len(new) - len(old), 0)
                if worst > __self.max_output:
                    raise __self._too_big("str.replace()")
            elif name == "join" and args:
                _check_join(__self, args[0], target)
        rv = super().call(__context, __obj, *args, **kwargs)
        return __self._check_len(rv, "call result")


def _check_join(env: LimitedSandbox, items: Any, sep: str) -> None:
    if isinstance(items, (list, tuple, str, range)):
        if len(items) * (len(sep) + 1) > env.max_output * 4:
            raise env._too_big("join")


def guard_filter(env: LimitedSandbox, name: str, func: Callable) -> Callable:
    """Wrap a filter with size checks before and after it runs."""

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in (*args, *kwargs.values()) if not _is_jinja_internal(a)]
        if name in ("center", "indent"):
            for a in values[1:]:
                env._check_int(a, f"{name} width")
                env._check_len(a, f"{name} argument")
        elif name == "format" and values and isinstance(values[0], str):
            env._check_percent(values[0], tuple(values[1:]))
        elif name == "replace" and len(values) >= 3:
            s, old, new = (str(v) for v in values[:3])
            worst = len(s) + (len(s) + 1) * max(len(new) - len(old), 0)
            if worst > env.max_output:
                raise env._too_big("replace")
        elif name == "wordwrap" and values:
            s = str(values[0])
            wrapstring = str(kwargs.get("wrapstring", values[4] if len(values) > 4 else "\n"))
            if len(s) * (len(wrapstring) + 1) > env.max_output * 4:
                raise env._too_big("wordwrap")
        elif name == "join" and values:
            sep = values[1] if len(values) > 1 else kwargs.get("d", "")
            _check_join(env, values[0], str(sep))
        rv = func(*args, **kwargs)
        return env._check_len(rv, f"filter {name}") if isinstance(rv, str) else rv

    return guarded


def _is_jinja_internal(value: Any) -> bool:
    mod = type(value).__module__ or ""
    return mod.startswith("jinja2.") and not isinstance(value, (str, int))


_JINJA_FILTER_MODULE = "jinja2.filters"


class Deadline:
    """Stops a render after ``limit`` seconds of thread CPU time.

    Installs a ``sys.settrace`` tracer for the duration of the render. Line events are
    traced only in frames of compiled templates (their globals hold our environment) and of
    Jinja's filter module; the deadline is raised there, never inside other library code.
    The previous tracer is restored afterwards. The last template line seen is kept for
    error messages.
    """

    def __init__(self, env: SandboxedEnvironment, limit: float) -> None:
        self.env = env
        self.limit = limit
        self.deadline = 0.0
        self.expired = False
        self.last: tuple[str, int, str] | None = None  # filename, python line, debug_info
        self._previous: Any = None

    def __enter__(self) -> "Deadline":
        self.deadline = time.thread_time() + self.limit
        self._previous = sys.gettrace()
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.settrace(self._previous)

    def _is_template(self, frame: Any) -> bool:
        return frame.f_globals.get("environment") is self.env

    def _check(self) -> None:
        if self.expired or time.thread_time() > self.deadline:
            self.expired = True
            raise RenderLimitError(f"render took longer than {self.limit:g} s CPU time")

    def _global(self, frame: Any, event: str, arg: Any) -> Any:
        if self._is_template(frame):
            self._remember(frame)
            self._check()
            return self._local
        if frame.f_globals.get("__name__") == _JINJA_FILTER_MODULE:
            self._check()
            return self._local
        if not self.expired and time.thread_time() > self.deadline:
            self.expired = True  # raised at the next template line
        return None

    def _local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line":
            if self._is_template(frame):
                self._remember(frame)
            self._check()
        return self._local

    def _remember(self, frame: Any) -> None:
        self.last = (
            frame.f_code.co_filename,
            frame.f_lineno,
            frame.f_globals.get("debug_info", ""),
        )

    def template_line(self) -> tuple[str, int] | None:
        """(template filename, template line) of the last template line executed."""
        if not self.last:
            return None
        filename, pyline, debug_info = self.last
        line = 1
        pairs = [tuple(map(int, x.split("="))) for x in debug_info.split("&") if "=" in x]
        for tline, cline in reversed(pairs):
            if cline <= pyline:
                line = tline
                break
        return filename, line
