"""KID with a spread at any test-set size (a single KID over all images, as the standard
subset size of 1,000 gives below 1,000 images, has none).

Subsets of half the images (at most the standard 1,000) drawn without replacement from each
set, `subsets` times: the SD over subsets shows how much of a KID difference at this n is
the choice of images. Written as test/kid_std (and test/kid_<model>_std), the report shows
it as subset_sd:kid@n.
"""

from __future__ import annotations


def kid_with_spread(real, fake, subsets: int = 100, seed: int = 0) -> dict:
    """{"kid": mean, "kid_std": SD (ddof 0, as torchmetrics), "kid_subset_size", "kid_subsets"}."""
    from ablate.evaluate.fidelity import KID_SUBSET_SIZE, kid_subset_values

    n = min(len(real), len(fake))
    if n < 4:
        raise ValueError(f"KID with a spread: need at least 4 samples per set (2 per subset), got {len(real)} "
                         f"real and {len(fake)} generated")
    size = min(KID_SUBSET_SIZE, n // 2)
    values = kid_subset_values(real, fake, subsets=subsets, subset_size=size, seed=seed)
    return {"kid": float(values.mean()), "kid_std": float(values.std()), "kid_subset_size": size,
            "kid_subsets": subsets}
