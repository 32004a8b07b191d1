"""transformers' automatic-speech-recognition pipeline, told that this model is Whisper-shaped.

The pipeline picks Whisper's pre/post-processing (30 s windows with strides, timestamp tokens, WhisperTokenizer's
`_decode_asr`) only when `model.config.model_type == "whisper"`; any other model type that is not one of its own
seq2seq classes is run as CTC. A checkpoint of TformerWhisperForConditionalGeneration names this class in
`config.custom_pipelines`, so `pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True)` builds
it; everything else is the stock pipeline.
"""

from transformers.pipelines.automatic_speech_recognition import AutomaticSpeechRecognitionPipeline


class TformerSpeechRecognitionPipeline(AutomaticSpeechRecognitionPipeline):
    @property
    def type(self) -> str:
        return "seq2seq_whisper"

    @type.setter
    def type(self, value: str) -> None:
        """The stock __init__ assigns the type it detects (\"ctc\" for a model type it does not know): ignored."""
