"""The labelling pages: one query at a time, "Was this action good here?" (yes / no / can't tell)
and, after a no, "Which action would be best?" (one button per other action).

GET /label hands the labeller their query (the one they hold, else the next free one, now locked
to them) and GET /label/{id} shows it: the clip (the state marked in red), the frame stack, the
action taken, the question and the progress against the label budget. POST /label/{id} records
the answer, or refuses it with a message (someone else holds the query, it is already answered,
an unknown action). Keys: Y yes, N no, C can't tell; then 1..9 the actions in their order.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from fdt.teacher.app import (
    TeacherContext,
    error_page,
    form_fields,
    render,
    require_labeller,
)
from fdt.teacher.store import ConflictError, StoreError

VERDICT_BUTTONS = (("good", "y", "Yes"), ("bad", "n", "No"), ("unsure", "c", "Can't tell"))


def action_key(action: int) -> str:
    """The key of an action's button: 1..9, then a, b, ... (games have up to 18 actions)."""
    return str(action + 1) if action < 9 else "abdefghijklm"[action - 9]


class LabellingPages:
    title = "Label important states"
    entry = "/label"
    tables = ""  # answers and locks are the store's own tables

    def summary(self, context: TeacherContext, labeller: str) -> str:
        p = context.store.progress(labeller)
        return (f"<span class='progress'>{p['answers']} of {p['budget']} answers; "
                f"{p['mine']} yours</span>")

    def routes(self, context: TeacherContext) -> list[BaseRoute]:
        store, bundle = context.store, context.bundle
        names = bundle["action_names"]

        async def next_query(request: Request) -> Response:
            labeller = require_labeller(request)
            if not isinstance(labeller, str):
                return labeller
            query_id = store.next_query(labeller)
            if query_id is None:
                return render("done.html", "Done", labeller, progress=store.progress(labeller))
            return RedirectResponse(f"/label/{query_id}", status_code=303)

        async def show(request: Request) -> Response:
            labeller = require_labeller(request)
            if not isinstance(labeller, str):
                return labeller
            query_id = request.path_params["query_id"]
            try:
                query = store.query(query_id)
            except StoreError as err:
                return error_page(str(err), labeller, 404, "/label")
            holders = store.holders(query_id)
            if labeller not in holders:
                if holders:
                    return error_page(f"query {query_id} is being labelled by "
                                      f"{', '.join(holders)}", labeller, 409, "/label")
                return RedirectResponse("/label", status_code=303)
            asking_best = request.query_params.get("step") == "best"
            return self._query_page(context, query, labeller, asking_best)

        async def answer(request: Request) -> Response:
            labeller = require_labeller(request)
            if not isinstance(labeller, str):
                return labeller
            query_id = request.path_params["query_id"]
            fields = await form_fields(request)
            verdict = fields.get("verdict", "")
            best = fields.get("best_action")
            if verdict == "bad" and best is None:
                return RedirectResponse(f"/label/{query_id}?step=best", status_code=303)
            try:
                best_action = int(best) if best is not None else None
            except ValueError:
                return error_page(f"unknown action {best!r}; expected one of 0..{len(names) - 1}",
                                  labeller, 400, f"/label/{query_id}")
            try:
                store.answer(labeller, query_id, verdict, best_action)
            except ConflictError as err:
                return error_page(str(err), labeller, 409, "/label")
            except StoreError as err:
                return error_page(str(err), labeller, 400, f"/label/{query_id}")
            return RedirectResponse("/label", status_code=303)

        return [Route("/label", next_query), Route("/label/{query_id}", show),
                Route("/label/{query_id}", answer, methods=["POST"])]

    @staticmethod
    def _query_page(context: TeacherContext, query: dict, labeller: str,
                    asking_best: bool) -> Response:
        names = context.bundle["action_names"]
        best_actions = [{"value": a, "key": action_key(a), "name": name}
                        for a, name in enumerate(names) if a != query["action"]]
        verdicts = [{"value": v, "key": k, "label": label} for v, k, label in VERDICT_BUTTONS]
        return render("query.html", f"Query {query['id']}", labeller, query=query,
                      game=context.bundle["game"], taken=names[query["action"]],
                      progress=context.store.progress(labeller), asking_best=asking_best,
                      best_actions=best_actions, verdicts=verdicts)
