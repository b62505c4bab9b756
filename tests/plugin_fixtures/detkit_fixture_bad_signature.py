"""A plugin whose hook asks for an argument that the hook does not provide."""

import detkit


@detkit.hookimpl
def register_backbones(register, config):
    pass
