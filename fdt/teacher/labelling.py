"""The labelling pages: one query at a time, "Was this action good here?" (yes / no / can't tell)
and, after a no, "Which action would be best?" (one button per other action).

GET /label hands the labeller their query (the one they hold, else the next free one, now locked
to them) and GET /label/{id} shows it: the clip (the state marked in red), the frame stack, the
action taken, the question and the progress against the label budget. POST /label/{id} records
the answer, or refuses it with a message (someone else holds the query, it is already answered,
an unknown action). Keys: Y yes, N no, C can't tell; then 1..9 the actions in their order.
"""

from __future__ import annotations

import html

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from fdt.teacher.app import (
    TeacherContext,
    error_page,
    form_fields,
    page,
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
                p = store.progress(labeller)
                return page("Done", f"<h1 id='done'>Nothing left to label</h1><p class='progress'>"
                            f"{p['answers']} of {p['budget']} answers in; you gave {p['mine']}. "
                            "Thank you.</p>", labeller)
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
            holder = store.holder(query_id)
            if holder != labeller:
                if holder is not None:
                    return error_page(f"query {query_id} is being labelled by {holder}",
                                      labeller, 409, "/label")
                return RedirectResponse("/label", status_code=303)
            asking_best = request.query_params.get("step") == "best"
            return page(f"Query {query_id}", self._query_html(context, query, labeller,
                                                              asking_best), labeller)

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
    def _query_html(context: TeacherContext, query: dict, labeller: str, asking_best: bool) -> str:
        names = context.bundle["action_names"]
        taken = html.escape(names[query["action"]])
        p = context.store.progress(labeller)
        if asking_best:
            buttons = "".join(
                f"<button type='submit' name='best_action' value='{a}' data-key='{action_key(a)}'"
                f" id='best-{a}'>{html.escape(name)} <kbd>{action_key(a)}</kbd></button>"
                for a, name in enumerate(names) if a != query["action"])
            question = ("<h2 id='question'>Which action would be best?</h2>"
                        "<input type='hidden' name='verdict' value='bad'>" + buttons)
        else:
            buttons = "".join(f"<button type='submit' name='verdict' value='{v}' data-key='{k}' "
                              f"id='verdict-{v}'>{label} <kbd>{k.upper()}</kbd></button>"
                              for v, k, label in VERDICT_BUTTONS)
            question = "<h2 id='question'>Was this action good here?</h2>" + buttons
        return (f"<p class='progress' id='progress'>{p['answers']} of {p['budget']} answers in "
                f"(budget); {p['mine']} yours</p>"
                f"<p class='progress' id='where'>{html.escape(context.bundle['game'])}, query "
                f"{query['id']}: replay index {query['replay_index']} (buffer {query['buffer']}, "
                f"slot {query['slot']})</p>"
                "<div class='media'>"
                f"<figure><img id='clip' src='/media/{query['clip']}' alt='clip around the state'>"
                "<figcaption>the state is framed red</figcaption></figure>"
                f"<figure><img id='stack' src='/media/{query['stack']}' alt='frame stack'>"
                "<figcaption>the 4 frames the agent saw, oldest first</figcaption></figure></div>"
                f"<p id='taken'>Action taken: <strong>{taken}</strong></p>"
                f"<form method='post' action='/label/{query['id']}'>{question}</form>")
