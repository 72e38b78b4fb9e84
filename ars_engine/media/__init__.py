"""Media: prompt catalogue, TTS, audio codecs, digits/amounts from clips, DTMF, recording."""
