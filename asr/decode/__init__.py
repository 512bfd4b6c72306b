"""asr.decode"""
