from django.core.management.base import BaseCommand, CommandError

from notifier.models import Producer
from notifier.models.producers import SCOPE_SEND, SCOPES, scopes_ordered


class Command(BaseCommand):
    help = "Create a producer and print its new API key (shown once) as the last line."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--scope", action="append", choices=list(SCOPES), default=[],
            help="Repeatable. 'send' is always granted; add any of: "
                 + "; ".join(f"'{name}' to {what}" for name, what in SCOPES.items() if name != SCOPE_SEND) + ".",
        )

    def handle(self, name, scope, **options):
        if Producer.objects.filter(name=name).exists():
            raise CommandError(f"A producer named {name!r} exists; rotate its key in Django admin instead.")
        scopes = scopes_ordered([SCOPE_SEND, *scope])
        producer, key = Producer.create_with_key(name, scopes)
        self.stdout.write(f"Created producer {producer.name} with scopes {', '.join(scopes)}. Its key, shown once:")
        self.stdout.write(key)
