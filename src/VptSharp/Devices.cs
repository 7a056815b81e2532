using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp;

/// <summary>Torch devices by name ("auto", "cpu", "cuda", "cuda:1").</summary>
public static class Devices
{
    /// <summary>The device named <paramref name="name"/> ("auto": CUDA when this build has it and a GPU is visible, else the
    /// CPU); refuses CUDA when this build's libtorch has none (setting "device").</summary>
    public static Device Parse(string name)
    {
        var d = new Device(Hardware.ComputeDevice.Resolve(name));
        if (d.type == DeviceType.CUDA && !cuda.is_available())
            throw new InvalidSettingException("device", name, "CUDA is not available in this build (or no GPU is visible); build with -p:TorchRuntime=cuda, which references the libtorch CUDA runtime package instead of libtorch-cpu");
        return d;
    }
}
