"""The channel registry: name → channel. Adding a channel is one module and one line here."""
from .email import EmailChannel
from .in_app import InAppChannel
from .push import PushChannel
from .sms import SmsChannel

CHANNELS = {
    channel.name: channel for channel in (PushChannel(), EmailChannel(), SmsChannel(), InAppChannel())
}
