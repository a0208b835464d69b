use wgml::{Device, Tensor};
fn main() -> wgml::Result<()> {
    env_logger::init();
    let g = Device::gpu()?;
    println!("{}", g.name());
    let a = Tensor::arange(0.0, 6.0, 1.0, &g)?.reshape([2, 3])?;
    let b = Tensor::from_vec(vec![10.0, 20.0, 30.0], [3], &g)?;
    println!("{:?}", a.t()?.contiguous()?.to_vec()?);
    println!("{:?}", a.add(&b)?.to_vec()?);
    println!("{:?}", a.gelu()?.to_vec()?);
    println!("{:?}", Tensor::cat(&[&a, &a.mul_scalar(2.0)?], 1)?.to_vec()?);
    println!("{:?}", Tensor::full(3.0, [5], &g)?.to_vec()?);
    println!("{:?}", Tensor::zeros([5], &g)?.to_vec()?);
    println!("{:?}", pollster::block_on(a.exp()?.to_vec_async())?);
    Ok(())
}
