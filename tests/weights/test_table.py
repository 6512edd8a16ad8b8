"""The pretrained-files table (ablate.weights.table): a file failing its hash is refused and kept, as the README says."""

from __future__ import annotations

import pytest

from tests.helpers import REPO

# ---- finding 12: the README says what happens to a file that fails its hash --------------------

@pytest.mark.bad_input
def test_a_file_failing_its_hash_is_refused_and_kept_as_the_readme_says(tmp_path):

    from ablate.weights.table import WeightsHashMismatch, entry, verify_file

    bad = tmp_path / "vgg16-397923af.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(WeightsHashMismatch, match=rf"vgg16: {bad} has sha256 .* Delete it, then"):
        verify_file(entry("vgg16"), bad)
    assert bad.read_bytes() == b"not the weights"  # refused and named, not deleted
    readme = (REPO / "README.md").read_text()
    assert "refused, named, and deleted" not in readme
    assert "a file already there (the cache's, or yours through\nthe environment variable) is left in place" in readme
