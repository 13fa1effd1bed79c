from .base import ProviderChannel, Target


class SmsChannel(ProviderChannel):
    name = "sms"

    def targets(self, recipient, devices):
        if not recipient.phone:
            return [], "recipient has no phone number"
        if recipient.sms_opted_out_at:
            return [], "recipient opted out of SMS (carrier reported STOP)"
        return [Target(address=recipient.phone)], ""
