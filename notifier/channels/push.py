from notifier.models import Platform
from notifier.providers.registry import provider_get, provider_names

from .base import ProviderChannel, Target


class PushChannel(ProviderChannel):
    """Mobile and web push: one target per active device of the recipient."""

    name = "push"

    def targets(self, recipient, devices):
        targets = [Target(address=d.token, device=d, platform=d.platform) for d in devices]
        return targets, "" if targets else "recipient has no active device"

    def providers_chain(self, delivery):
        # APNs serves iOS when it is configured; FCM serves Android and web, and iOS when APNs is absent.
        # A token belongs to one provider, so push has no failover.
        names = provider_names(self.name)
        platform = delivery.device.platform if delivery.device_id else ""
        if platform == Platform.IOS and "apns" in names:
            return [provider_get("apns", self.name)]
        if "fcm" in names:
            return [provider_get("fcm", self.name)]
        return [provider_get(names[0], self.name)]
