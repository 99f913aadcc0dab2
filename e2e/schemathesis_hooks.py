"""Loaded by Schemathesis in e2e/tests/openapi_fuzz.rs (SCHEMATHESIS_HOOKS).

CPython 3.11 (Debian 12's and this machine's) can raise `SystemError: AST constructor recursion
depth mismatch` from `ast.parse` when it is called deep in the stack. Hypothesis calls it only to
describe a filter lambda for its own messages, and lets anything but a SyntaxError escape, which
aborts that operation's test generation. The description is cosmetic: fall back to a fixed one.
"""

import hypothesis.internal.lambda_sources as lambda_sources

_describe = lambda_sources._lambda_description


def _describe_or_placeholder(*args, **kwargs):
    try:
        return _describe(*args, **kwargs)
    except SystemError:
        return "lambda: <source not parsed>"


lambda_sources._lambda_description = _describe_or_placeholder
