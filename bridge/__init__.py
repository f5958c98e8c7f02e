"""storingsbridge: KPN outage mails in, short Dutch WhatsApp notices out."""

__version__ = "0.1.0"
