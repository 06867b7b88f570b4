"""Backbones: wrappers that expose ``eps(z, t, cond)`` and the noise schedule (see ``base.Backbone``)."""
