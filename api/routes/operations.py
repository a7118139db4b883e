"""For the people who run the service: liveness, readiness and Prometheus metrics. No sign-in;
/metrics needs INVOICE_AUTOMATION_API_METRICS_TOKEN as a bearer token when one is set."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.auth import metrics_reader
from api.errors import answers
from api.routes.deps import context
from api.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:  # on the event loop: a full thread pool does not fail the liveness probe
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, summary="processscheduler and Kafka can be reached",
            responses={503: {"model": Readiness,
                             "description": "One of them cannot be reached: which, and since when"}})
def readyz(ctx=Depends(context)) -> JSONResponse:
    states = ctx.readiness.states()
    down = {name: since for name, since in states.items() if since is not None}
    body = Readiness(status="not ready" if down else "ready",
                     checks={name: "down" if name in down else "ok" for name in states}, down_since=down)
    return JSONResponse(body.model_dump(mode="json"), status_code=503 if down else 200)


@router.get("/metrics", summary="Prometheus metrics, read at most once per API_STATUS_CACHE_SECONDS",
            dependencies=[Depends(metrics_reader)], responses=answers(401) | {
                200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
def metrics(ctx=Depends(context)) -> Response:
    return Response(generate_latest(ctx.metrics), media_type=CONTENT_TYPE_LATEST)
