"""Checks on what a request to /api/ brings besides its JSON body (which ORJSONParser checks), made before
any view runs, so that every endpoint, including one added later, is covered: every query parameter and
path segment goes through notifier.validation.text_problem, and a `user_id` path segment must be a user id
(validate_user_id). A 400 names the parameter or segment
(`cursor`, `user_id`).
"""
from django.core.exceptions import ValidationError

from notifier.api.errors import error_response
from notifier.validation import text_problem, validate_user_id

API_PREFIX = "/api/"


class ApiInputMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not request.path_info.startswith(API_PREFIX):
            return None
        errors = {}
        for name, value in view_kwargs.items():
            if problem := text_problem(value):
                errors[name] = [problem]
            elif name == "user_id":
                try:
                    validate_user_id(value)
                except ValidationError as error:
                    errors[name] = list(error.messages)
        for name, values in request.GET.lists():
            problems = [problem for value in values if (problem := text_problem(value))]
            if problems:
                errors[name] = problems[:1]
        if not errors:
            return None
        first_name, first_problems = next(iter(errors.items()))
        return error_response(400, "invalid", f"{first_name}: {first_problems[0]}", errors)
