"""HTTP API of the A/B service, a FastAPI router mounted on the Gradio app at `/api/ab`.

An ad server asks which creative to show a user (`POST /choose`), reports the impression if
it did not let `/choose` record it, and reports clicks; people's pairwise judgements arrive as
votes. Every request and response is a pydantic model, so `/openapi.json` documents it all.
Endpoints are plain `def`s: FastAPI runs them in its thread pool, and every store call is one
transaction on its own connection, so concurrent requests are safe. Retries are safe too: send an
`event_id` and a repeated request is recorded once and answered with `duplicate: true`; the same
`event_id` for a different event of the experiment is a 409. A database that cannot be used
(damaged, read-only, an unreachable server) answers 503 with one JSON message.

    from app.ab.api import make_router
    fastapi_app.include_router(make_router("outputs/ab.sqlite"), prefix="/api/ab")
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, TypeVar

import numpy as np
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InputError

from .db import StoreUnavailable
from .service import choose_arm, results, serve_once, vote_pair
from .store import ABStore, EventConflict

log = logging.getLogger("atelier.ab")

Id = Field(min_length=1, max_length=200)
OptId = Field(None, min_length=1, max_length=200)
T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChooseRequest(_Model):
    """Ask which creative to show a user in an experiment."""

    experiment_id: str = Id
    user_id: Optional[str] = OptId
    record_impression: bool = Field(True, description="Also record the impression (one round trip).")
    event_id: Optional[str] = Field(None, min_length=1, max_length=200, description="Idempotency key of the impression.")


class ChooseResponse(_Model):
    """The creative to show (and the impression id when it was recorded)."""

    experiment_id: str
    creative_id: str
    impression_id: Optional[str] = Field(None, description="Report clicks with this id.")
    image_path: Optional[str] = None
    duplicate: bool = Field(False, description="True when this event_id was already recorded: nothing new was stored.")


class ImpressionRequest(_Model):
    """A creative was shown to a user."""

    experiment_id: str = Id
    creative_id: str = Id
    user_id: Optional[str] = OptId
    event_id: Optional[str] = OptId


class ImpressionResponse(_Model):
    """Id of the recorded impression."""

    impression_id: str
    duplicate: bool = Field(False, description="True when this event_id was already recorded: nothing new was stored.")


class ClickRequest(_Model):
    """A click, by impression id (preferred) or by experiment + creative."""

    impression_id: Optional[str] = Field(None, min_length=1, max_length=200, description="Preferred: counted once.")
    experiment_id: Optional[str] = OptId
    creative_id: Optional[str] = OptId
    user_id: Optional[str] = OptId
    event_id: Optional[str] = OptId


class ClickResponse(_Model):
    """Id of the recorded click."""

    click_id: str
    duplicate: bool = Field(False, description="True when this event_id was already recorded: nothing new was stored.")


class VoteRequest(_Model):
    """A person preferred `winner_id` over `loser_id`."""

    experiment_id: str = Id
    winner_id: str = Id
    loser_id: str = Id
    user_id: Optional[str] = OptId
    event_id: Optional[str] = OptId


class VoteResponse(_Model):
    """Id of the recorded vote."""

    vote_id: str
    duplicate: bool = Field(False, description="True when this event_id was already recorded: nothing new was stored.")


class FeedbackRequest(_Model):
    """A shopper's answer to shown creatives: choice (chosen first, then the others shown), click, like,
    skip or impression (one creative)."""

    experiment_id: str = Id
    user_id: str = Id
    kind: str = Field(..., pattern="^(impression|click|choice|like|skip)$")
    creative_ids: list[str] = Field(..., min_length=1, max_length=20)
    event_id: Optional[str] = OptId


class FeedbackResponse(_Model):
    """Id of the recorded feedback event."""

    event_id: str
    duplicate: bool = Field(False, description="True when this event_id was already recorded: nothing new was stored.")


class ConditionResponse(_Model):
    """A shopper's top attributes before and after her stored feedback (recomputed from the events)."""

    user_id: str
    start: str
    events: int
    choices: int
    attributes: dict


class PairResponse(_Model):
    """Two creatives to show side by side for a vote."""

    experiment_id: str
    left_id: str
    right_id: str
    left_image_path: Optional[str] = None
    right_image_path: Optional[str] = None


class ExperimentInfo(_Model):
    """One experiment."""

    experiment_id: str
    name: str
    segment: Optional[str]
    control_id: Optional[str]
    status: str


class CreativeResult(_Model):
    """Posterior CTR summary of one creative (Beta-Bernoulli, Monte Carlo)."""

    creative_id: str
    image_path: Optional[str]
    clicks: int
    impressions: int
    ctr: float = Field(description="Posterior mean CTR (Beta(1,1) prior).")
    ctr_low: float
    ctr_high: float
    prob_best: float
    prob_beat_control: Optional[float] = Field(description="None for the control itself.")
    expected_loss: float


class StopResult(_Model):
    """The stopping rule's decision."""

    stop: bool
    winner: Optional[str]
    reason: str


class VoteRank(_Model):
    """A creative's Bradley-Terry strength from pairwise votes."""

    creative_id: str
    rank: int
    score: float = Field(description="Bradley-Terry log-strength (0 = reference).")
    stderr: float
    wins: int
    games: int


class VoteResults(_Model):
    """The Bradley-Terry ranking of an experiment's creatives."""

    n_votes: int
    ranking: list[VoteRank]


class ResultsResponse(_Model):
    """Online CTR results, the stopping rule and the vote ranking of one experiment."""

    experiment_id: str
    name: str
    segment: Optional[str]
    status: str
    control_id: Optional[str]
    creatives: list[CreativeResult]
    stop: Optional[StopResult]
    votes: VoteResults


def _guard(fn: Callable[[], T]) -> T:
    """User mistakes become 404 (unknown ids), 409 (an event_id reused for another event) or 400, with the
    one-line message as detail; an unusable database is a 503 with one log line, never a traceback."""
    try:
        return fn()
    except StoreUnavailable as e:
        log.warning("A/B store unavailable: %s", e)
        raise HTTPException(status_code=503, detail=f"A/B store unavailable: {e.problem}") from None
    except EventConflict as e:
        raise HTTPException(status_code=409, detail=str(e)) from None
    except InputError as e:
        raise HTTPException(status_code=404 if "unknown" in e.problem else 400, detail=str(e)) from None


def make_router(store: ABStore | str | Path) -> APIRouter:
    """The A/B API on one store (a path or an ABStore)."""
    store = store if isinstance(store, ABStore) else ABStore(store)
    router = APIRouter(tags=["ab"])

    @router.get("/experiments", response_model=list[ExperimentInfo])
    def list_experiments() -> list[ExperimentInfo]:
        """All experiments."""
        return _guard(lambda: [
            ExperimentInfo(experiment_id=e.experiment_id, name=e.name, segment=e.segment,
                           control_id=e.control_id, status=e.status)
            for e in store.experiments()
        ])

    @router.post("/choose", response_model=ChooseResponse)
    def choose(req: ChooseRequest) -> ChooseResponse:
        """Which creative to show this user now (Thompson sampling); records the impression by default."""

        def go() -> ChooseResponse:
            if req.record_impression:
                out = serve_once(store, req.experiment_id, user_id=req.user_id, event_id=req.event_id)
                return ChooseResponse(**out)
            arm = choose_arm(store, req.experiment_id, np.random.default_rng())
            return ChooseResponse(experiment_id=req.experiment_id, creative_id=arm.creative_id,
                                  image_path=arm.image_path)

        return _guard(go)

    @router.post("/impression", response_model=ImpressionResponse)
    def impression(req: ImpressionRequest) -> ImpressionResponse:
        """Report that a creative was shown."""
        def go() -> ImpressionResponse:
            imp = store.record_impression(req.experiment_id, req.creative_id, user_id=req.user_id,
                                          event_id=req.event_id)
            return ImpressionResponse(impression_id=imp, duplicate=imp.duplicate)

        return _guard(go)

    @router.post("/click", response_model=ClickResponse)
    def click(req: ClickRequest) -> ClickResponse:
        """Report a click, by impression id (preferred) or by experiment + creative."""
        def go() -> ClickResponse:
            click = store.record_click(req.experiment_id, req.creative_id, impression_id=req.impression_id,
                                       user_id=req.user_id, event_id=req.event_id)
            return ClickResponse(click_id=click, duplicate=click.duplicate)

        return _guard(go)

    @router.post("/vote", response_model=VoteResponse)
    def vote(req: VoteRequest) -> VoteResponse:
        """Report a pairwise judgement: winner preferred over loser."""
        def go() -> VoteResponse:
            vote = store.record_vote(req.experiment_id, req.winner_id, req.loser_id, user_id=req.user_id,
                                     event_id=req.event_id)
            return VoteResponse(vote_id=vote, duplicate=vote.duplicate)

        return _guard(go)

    @router.post("/feedback", response_model=FeedbackResponse)
    def feedback(req: FeedbackRequest) -> FeedbackResponse:
        """Record a shopper's feedback on creatives (idempotent on event_id)."""
        def go() -> FeedbackResponse:
            rec = store.record_feedback(req.experiment_id, req.user_id, req.kind, req.creative_ids,
                                        event_id=req.event_id)
            return FeedbackResponse(event_id=rec, duplicate=rec.duplicate)

        return _guard(go)

    @router.get("/feedback/{user_id}/condition", response_model=ConditionResponse)
    def feedback_condition(user_id: str, top: int = 3) -> ConditionResponse:
        """The shopper's condition updated by her stored feedback events and votes."""
        from .feedback import condition_summary, shopper_posterior

        def go() -> ConditionResponse:
            base, post, events = shopper_posterior(store, user_id)
            return ConditionResponse(user_id=user_id, start=base.source, events=len(events), choices=len(post.choices),
                                     attributes=condition_summary(base, post, max(1, min(top, 20))))

        return _guard(go)

    @router.get("/experiments/{experiment_id}/pair", response_model=PairResponse)
    def pair(experiment_id: str) -> PairResponse:
        """Two creatives to show side by side for a vote (least-judged first)."""

        def go() -> PairResponse:
            left, right = vote_pair(store, experiment_id)
            paths = {a.creative_id: a.image_path for a in store.arms(experiment_id)}
            return PairResponse(experiment_id=experiment_id, left_id=left, right_id=right,
                                left_image_path=paths[left], right_image_path=paths[right])

        return _guard(go)

    @router.get("/experiments/{experiment_id}/results", response_model=ResultsResponse)
    def read_results(experiment_id: str) -> ResultsResponse:
        """Posterior CTRs, probability to beat control, stopping rule, Bradley-Terry ranking."""
        return _guard(lambda: ResultsResponse(**results(store, experiment_id, n_samples=10000)))

    return router
