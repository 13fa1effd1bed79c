from .base import ProviderChannel, Target


class SmsChannel(ProviderChannel):
    name = "sms"

    def targets(self, recipient, devices):
        if not recipient.phone:
            return [], "recipient has no phone number"
        if recipient.sms_opted_out_at:  # cleared when the phone number changes
            return [], "the SMS provider reported this number unsubscribed or invalid"
        return [Target(address=recipient.phone)], ""
