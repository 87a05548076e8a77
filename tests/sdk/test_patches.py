"""Canaries: every private part of the SDK that sdk/patches.py touches still exists in the installed SDK.

One test per patched attribute (run under both SDK lines, as tests/sdk is): a release that moves one fails
the test that names it, not twenty unrelated ones."""

from __future__ import annotations

import inspect

import pytest

from jupyter_smstep.sdk import compat, patches

MAJOR = compat.installed_major()


ON_THIS_LINE = [p for p in patches.PATCHED if MAJOR in p.lines]


@pytest.mark.parametrize("patched", ON_THIS_LINE, ids=[p.path for p in ON_THIS_LINE])
def test_the_patched_attribute_exists(patched):
    """(An optional one is absent from older releases of its line; the pinned release has it.)"""
    assert callable(patches.resolve(patched, MAJOR))


@pytest.mark.parametrize("attribute", patches.COMPILER_ATTRIBUTES)
def test_the_steps_compiler_sets_the_attribute_the_build_step_wrapper_replaces(attribute):
    init = inspect.getsource(patches.resolve(patches.PATCHED[1], MAJOR))
    assert f"self.{attribute}" in init  # (the compiled step's _request_dict: tests/sdk/test_content.py's CacheConfig)


def test_the_wrappers_are_installed_once_and_say_so():
    from jupyter_smstep.sdk import content

    content._install(MAJOR)
    content._install(MAJOR)
    wrapped = patches.resolve(patches.PATCHED[0], MAJOR)
    assert wrapped._smstep and "around" in wrapped.__code__.co_freevars


def test_the_sdks_role_check_switch_is_the_one_put_triggers_honours():
    """v3's Pipeline.put_triggers checks the schedule's role through resolve_and_validate_role, which
    SAGEMAKER_VALIDATE_ROLE=false turns off (remote.eventbridge turns it off after checking the right trust);
    v2 has no such check."""
    pipeline = __import__(compat.modules(MAJOR)["pipeline"], fromlist=["Pipeline"]).Pipeline
    source = inspect.getsource(pipeline.put_triggers)
    if MAJOR < 3:
        assert "resolve_and_validate_role" not in source
        return
    assert "resolve_and_validate_role" in source
    from sagemaker.core.helper import iam_role_resolver

    assert 'os.getenv("SAGEMAKER_VALIDATE_ROLE"' in inspect.getsource(iam_role_resolver.resolve_and_validate_role)
