"""rs-embed's ``rs_embed.core`` import paths, kept so that ``from xrembed.core.embedding import Embedding`` works
as ``from rs_embed.core.embedding import Embedding`` did. New code imports from ``xrembed`` directly."""
