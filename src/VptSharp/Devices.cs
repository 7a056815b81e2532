using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp;

/// <summary>Torch devices by name ("cpu", "cuda", "cuda:1").</summary>
public static class Devices
{
    /// <summary>The device named <paramref name="name"/>; refuses CUDA when this build's libtorch has none (setting "device").</summary>
    public static Device Parse(string name)
    {
        var d = new Device(name);
        if (d.type == DeviceType.CUDA && !cuda.is_available())
            throw new InvalidSettingException("device", name, "CUDA is not available in this build; reference a libtorch-cuda runtime package instead of libtorch-cpu");
        return d;
    }
}
