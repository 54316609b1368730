"""The client side: settings, the farm client, the embedded-farm launcher and the use cases."""
