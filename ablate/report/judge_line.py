"""The line beside every vessel verdict that says how far its judge can be trusted on the
images it judged (issue 31), and the rule that cautions.

Evaluation records, per image size, the vessel segmenter measured on the originals of the
evaluated split (eval/notes.json `judge`, ablate.evaluate.judge_reliability): its Dice / AUC
against manual masks where the split has them, the ridge filter's Dice on the same masks, and
its agreement with the ridge map. The verdict always stands; the line cautions when

- with manual masks: the judge's Dice against them is below the ridge filter's on the same
  masks (`JUDGE_MARGIN_OVER_RIDGE` = 0): its maps are further from the manual vessels than
  an untrained filter's, the filter the report refuses as a judge;
- without: its mean agreement with the ridge map is below `MIN_RIDGE_AGREEMENT` (0.70).

Where they come from (README, "How far the vessel judge can be trusted";
benchmarks/judge_reliability.py): on DRIVE and STARE test at 128 and 256 px, the two U-Nets at
or below their training size beat the ridge filter by +0.03 to +0.14 Dice and agree with its
map at 0.72-0.75; the 128 px U-Net judging 256 px images (2x, inside the resampling evaluation
allows) scores Dice 0.50 / 0.53, 0.14-0.17 below the ridge filter, and agrees with its map at
0.67 / 0.55. Both rules separate the failures from the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

JUDGE_MARGIN_OVER_RIDGE = 0.0  # with manual masks: caution when judge Dice < ridge Dice + this
MIN_RIDGE_AGREEMENT = 0.70  # without: caution when the mean agreement with the ridge map is below this
RULE_WHERE = "README, \"How far the vessel judge can be trusted\""
NOT_RECORDED = ("not recorded (evaluated before ablate measured the judge on the originals; "
                "`ablate evaluate` again records it)")


@dataclass(frozen=True)
class JudgeLine:
    """The line beside a vessel verdict; `caution` the broken rule in words ("" when none)."""
    text: str
    caution: str = ""


def record_caution(rec: dict) -> str:
    """The rule applied to one record (ablate.schemas.JudgeReliability as a dict): why it cautions,
    or "". With manual masks their Dice decides; without, the agreement with the ridge map."""
    dice, ridge = rec.get("dice"), rec.get("ridge_dice")
    if dice is not None and ridge is not None:
        if dice < ridge + JUDGE_MARGIN_OVER_RIDGE:
            return (f"at {rec.get('image_size')} px it scores Dice {dice:.3f} against the {rec.get('masks')} manual "
                    f"masks, below the untrained ridge filter's {ridge:.3f} on the same masks")
        return ""
    agree = rec.get("ridge_agreement")
    if agree is not None and agree < MIN_RIDGE_AGREEMENT:
        return (f"at {rec.get('image_size')} px, with no manual masks to score it, its maps agree with the ridge "
                f"map at Dice {agree:.3f} only, below {MIN_RIDGE_AGREEMENT:.2f}")
    return ""


def _clause(rec: dict, sizes: int) -> str:
    at = f" at {rec.get('image_size')} px" if sizes > 1 else ""
    parts = []
    if rec.get("masks") and rec.get("dice") is not None:
        auc = "" if rec.get("auc") is None else f" / AUC {rec['auc']:.3f}"
        ridge = f" (ridge filter: Dice {rec['ridge_dice']:.3f})" if rec.get("ridge_dice") is not None else ""
        parts.append(f"Dice {rec['dice']:.3f}{auc} vs {rec['masks']} manual masks{ridge}")
    else:
        parts.append("no manual masks here")
    if rec.get("ridge_agreement") is not None:
        parts.append(f"agrees with the ridge map at Dice {rec['ridge_agreement']:.3f} (mean of {rec.get('images')} "
                     f"images, lowest {rec.get('ridge_agreement_min', float('nan')):.3f})")
    else:
        parts.append(f"agreement with the ridge map not measured: {rec.get('ridge_agreement_skipped') or 'not recorded'}")
    return f"{rec.get('segmenter', '?')}{at} — " + "; ".join(parts)


def judge_line(notes: dict) -> JudgeLine:
    """The line for an evaluation's notes (eval/notes.json as a dict; {} when there are none)."""
    records = notes.get("judge") or []
    if not records:
        return JudgeLine(f"Vessel judge on these originals: {NOT_RECORDED}.")
    text = "Vessel judge on these originals: " + "; ".join(_clause(r, len(records)) for r in records) + "."
    cautions = [c for r in records if (c := record_caution(r))]
    if not cautions:
        return JudgeLine(text)
    caution = (f"{records[0].get('segmenter', 'the judge')} " + "; ".join(cautions)
               + ": it may mark these vessels worse than a filter with no training, so the vessel verdict may say "
               f"more about the judge than about the reconstructions (rule: {RULE_WHERE})")
    return JudgeLine(f"{text} CAUTION: {caution}.", caution)
