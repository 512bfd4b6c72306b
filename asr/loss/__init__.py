"""asr.loss"""
