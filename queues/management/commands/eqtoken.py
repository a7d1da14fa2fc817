"""``manage.py eqtoken``: create, list and revoke API tokens."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from queues import tokens
from queues.models import ApiToken


class Command(BaseCommand):
    help = (
        "Manage API tokens. A grant reads PREFIX=ACTION,... with actions "
        f"{', '.join(tokens.ACTIONS)}; an empty prefix means every queue "
        "(for example: --grant billing/=claim,delete --grant =read)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        verbs = parser.add_subparsers(dest="verb", required=True)
        create = verbs.add_parser("create", help="create a token and print its secret once")
        create.add_argument("--user", required=True, help="the user the token acts for")
        create.add_argument("--name", required=True, help="what the token is for")
        create.add_argument("--grant", action="append", required=True, help="PREFIX=ACTIONS")
        listing = verbs.add_parser("list", help="list tokens (never their secrets)")
        listing.add_argument("--user", help="only this user's")
        revoke = verbs.add_parser("revoke", help="revoke a token by its key ID")
        revoke.add_argument("key_id")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"do_{options['verb']}")(options)

    def do_create(self, options: dict[str, Any]) -> None:
        try:
            user = get_user_model().objects.get_by_natural_key(options["user"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"no user {options['user']!r}") from None
        try:
            grants = [tokens.Grant.parse(g) for g in options["grant"]]
            token, secret = tokens.create(user, options["name"], grants)
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stderr.write(
            f"Created token {token.key_id} ({token.name}) for {user.get_username()}, "
            f"claimant {token.claimant}. Its secret, shown only now:"
        )
        self.stdout.write(secret)

    def do_list(self, options: dict[str, Any]) -> None:
        found = ApiToken.objects.select_related("user").order_by("user__username", "created")
        if options["user"]:
            found = found.filter(user__username=options["user"])
        for token in found:
            grants = " ".join(str(g) for g in tokens.grants_of(token))
            state = f"revoked {token.revoked:%Y-%m-%d}" if token.revoked else "live"
            used = f"{token.last_used:%Y-%m-%d %H:%M}" if token.last_used else "never"
            self.stdout.write(
                f"{token.key_id}  {token.user.get_username()}  {token.name!r}  {grants}  "
                f"{state}  last used {used}"
            )

    def do_revoke(self, options: dict[str, Any]) -> None:
        token = ApiToken.objects.filter(key_id=options["key_id"]).first()
        if token is None:
            raise CommandError(f"no token {options['key_id']!r}")
        tokens.revoke(token)
        self.stdout.write(f"Revoked {token.key_id} ({token.name}).")
