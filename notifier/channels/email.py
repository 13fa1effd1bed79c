from .base import ProviderChannel, Target


class EmailChannel(ProviderChannel):
    name = "email"

    def targets(self, recipient, devices):
        if not recipient.email:
            return [], "recipient has no email address"
        return [Target(address=recipient.email)], ""
